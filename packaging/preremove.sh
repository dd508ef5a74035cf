#!/bin/sh
set -e
# Stopping the agent leaves its kernels running (KillMode=process); they
# are Docker containers and the next agent adopts them.
if [ -d /run/systemd/system ]; then
	systemctl stop backendai-agent-watcher.service backendai-agent.service 2>/dev/null || true
fi
