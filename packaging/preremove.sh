#!/bin/sh
set -e
# Only on removal ("remove" from dpkg, 0 from rpm), not on upgrade: the
# new package's postinstall restarts what was running. Stopping the agent
# leaves its kernels running (KillMode=process); they are Docker
# containers and the next agent adopts them.
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop backendai-agent-watcher.service backendai-agent.service 2>/dev/null || true
	fi
	;;
esac
