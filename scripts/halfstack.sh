#!/usr/bin/env bash
# A local control plane for bai-agent ("halfstack"): if nothing answers on
# the halfstack addresses, start Debian's redis-server (127.0.0.1:8111) and
# etcd (127.0.0.1:8120) with their data under ./var/halfstack, then seed
# the etcd keys the agent reads (namespace "local"). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT=${BAI_REDIS_PORT:-8111}
ETCD_PORT=${BAI_ETCD_PORT:-8120}
DATA=var/halfstack
mkdir -p "$DATA/redis" "$DATA/etcd"

if ! timeout 3 redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "halfstack: starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --dir "$PWD/$DATA/redis" --logfile "$PWD/$DATA/redis/redis.log" --appendonly yes >/dev/null
fi
etcd_ok() { ETCDCTL_API=3 timeout 3 etcdctl --endpoints "127.0.0.1:$ETCD_PORT" endpoint health >/dev/null 2>&1; }
if ! etcd_ok; then
  echo "halfstack: starting etcd on 127.0.0.1:$ETCD_PORT"
  nohup etcd --name halfstack --data-dir "$DATA/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "halfstack=http://127.0.0.1:$((ETCD_PORT + 1))" >"$DATA/etcd/etcd.log" 2>&1 &
fi
for _ in $(seq 1 60); do
  timeout 3 redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && etcd_ok && break
  sleep 1
done
timeout 3 redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || { echo "halfstack: redis-server did not come up ($DATA/redis/redis.log)" >&2; exit 1; }
etcd_ok || { echo "halfstack: etcd did not come up ($DATA/etcd/etcd.log)" >&2; exit 1; }

put() { ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$ETCD_PORT" put "/sorna/local/$1" "$2" >/dev/null; }
put config/redis/addr "127.0.0.1:$REDIS_PORT"
put volumes/_mount /mnt
put volumes/default_host local:volume1
put config/agent/api/pull-timeout 7200
put config/agent/container-logs/max-length 10M
put config/agent/container-logs/chunk-size 64K
put config/agent/kernel-lifecycles/init-polling-attempt 10
echo "halfstack: redis 127.0.0.1:$REDIS_PORT, etcd 127.0.0.1:$ETCD_PORT (namespace local) ready"
