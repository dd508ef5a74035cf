#!/usr/bin/env bash
# Runs bai-agent on a fresh machine with a local control plane: installs
# what is needed, starts redis-server and etcd on loopback if none answer
# (scripts/halfstack.sh), seeds etcd, and runs the agent with
# configs/agent/halfstack.toml (RPC on 127.0.0.1:6011, state under ./var).
# BAI_AGENT_CONFIG=configs/agent/local.toml runs a standalone node instead
# (no Redis or etcd). Extra arguments go to start-server.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="/usr/local/go/bin:$PATH"
make build
# A Python kernel image to try code with, made from this host's python3.11
# when it is not there yet (no registry needed).
./bin/bai-agent demo-image || echo "run-agent: no demo image (see the message above); kernels still work with other images" >&2
CONFIG=${BAI_AGENT_CONFIG:-configs/agent/halfstack.toml}
mkdir -p var/vfroot vfroot/local
if grep -q '^control-plane *= *"none"' "$CONFIG"; then :; else ./scripts/halfstack.sh; fi
exec ./bin/bai-agent start-server -f "$CONFIG" "$@"
