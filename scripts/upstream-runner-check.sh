#!/usr/bin/env bash
# Drives Backend.AI's own in-container kernel runner (ai.backend.kernel)
# from bai-agent: TestAdoptUpstreamKernelRunner_Integration, once per
# release given. Not part of CI: the runner is Backend.AI's code, not
# packaged for Debian and not committed here.
#
#   scripts/upstream-runner-check.sh /path/to/backend.ai [REF ...]
#
# /path/to/backend.ai is a git clone of lablup/backend.ai; each REF (a
# tag such as 25.19.2; default HEAD) is exported with git archive. The
# image runs Debian's python3.11, so releases up to 25.19 work (26.x uses
# Python 3.12 syntax). Needs what scripts/setup.sh --test installs plus
# python3-janus python3-jupyter-client python3-ipykernel python3-attr
# (and python3-async-timeout python3-uvloop for 23.09), installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=${1:?usage: $0 /path/to/backend.ai [REF ...]}
shift
refs=("$@")
[ ${#refs[@]} -gt 0 ] || refs=(HEAD)
./scripts/setup.sh --test
if [ "$(id -u)" = 0 ]; then
  apt-get install -y -q python3-janus python3-jupyter-client python3-ipykernel python3-attr python3-async-timeout python3-uvloop >/dev/null
fi
export CGO_ENABLED=1 CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
tmp=$(mktemp -d)
# Each export builds its own image (the tag follows the files); remove them.
cleanup() {
  rm -rf "$tmp"
  docker images -q bai-test/upstream-runner | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
}
trap cleanup EXIT
rc=0
for ref in "${refs[@]}"; do
  mkdir -p "$tmp/$ref"
  git -C "$repo" archive --format=tar "$ref" src/ai/backend/kernel | tar -x -C "$tmp/$ref"
  echo "== $ref"
  if ! BAI_UPSTREAM_SRC="$tmp/$ref/src" go test -count=1 -run TestAdoptUpstreamKernelRunner_Integration -v ./internal/agent/; then
    rc=1
  fi
done
exit $rc
