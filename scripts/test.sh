#!/usr/bin/env bash
# Runs every test of bai-agent on a fresh machine: installs what is needed
# (scripts/setup.sh), checks formatting and vet, then the unit and
# integration tiers against the real Docker engine and Python peers.
# Under CI=true a missing service fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=1
# go-nvml's vendored nvml.h marks old calls deprecated; their warnings are
# noise on every cold build.
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" $unformatted >&2
  exit 1
fi
# The runner embeds its web terminal's assets (xterm.js from Debian's
# node-xterm) at compile time, as `make build` does; written before any
# package is compiled, so that the runner's own tests never depend on
# another package's test having written them first.
go run ./tools/xtermbundle internal/krunner/webassets
go vet ./...
go build -o bin/bai-agent ./cmd/bai-agent
# Test port ranges must stay out of Linux's ephemeral range, where every
# outgoing connection of the machine (the suite's own Redis and etcd
# clients included) takes its local port: an agent given such a range
# refuses to start under this switch, so a test that does fails at once
# instead of once in twenty runs.
export BAI_TEST_FORBID_EPHEMERAL_PORTS=1
go test -race -count=1 -timeout 20m "$@" ./...
