#!/usr/bin/env bash
# Runs bai-agent on a fresh machine with the local default config
# (configs/agent/local.toml: RPC on 127.0.0.1:6011, state under ./var).
# Installs what is needed first. Extra arguments go to start-server.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="/usr/local/go/bin:$PATH"
make build
mkdir -p var/vfroot
exec ./bin/bai-agent start-server -f "${BAI_AGENT_CONFIG:-configs/agent/local.toml}" "$@"
