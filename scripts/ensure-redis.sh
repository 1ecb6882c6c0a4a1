#!/usr/bin/env bash
# Start a local Redis on 127.0.0.1:6379 unless one already answers there.
set -euo pipefail
if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "redis-server not found: install it (Debian: apt-get install redis-server)" >&2
  exit 1
fi
mkdir -p /tmp/mraru-redis
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
  --dir /tmp/mraru-redis --logfile /tmp/mraru-redis/redis.log
for _ in $(seq 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0
  sleep 0.1
done
echo "redis-server did not start; see /tmp/mraru-redis/redis.log" >&2
exit 1
