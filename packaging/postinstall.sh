#!/bin/sh
set -e
mkdir -p /var/lib/backend.ai /var/log/backend.ai
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	# An upgrade: restart the units that were running (none on a first
	# install; neither unit is enabled by the package).
	systemctl try-restart backendai-agent.service backendai-agent-watcher.service || true
fi
echo "bai-agent installed: edit /etc/backend.ai/agent.toml, run 'bai-agent doctor', then 'systemctl enable --now backendai-agent backendai-agent-watcher'."
