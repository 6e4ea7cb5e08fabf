#!/usr/bin/env bash
# Latency of GET /v1/health under `scaivault serve` (gunicorn + gevent), and the time `scaivault dev`
# needs to become ready from an empty directory. Needs wrk, a PostgreSQL (DATABASE_URL, default: a
# throwaway database on 127.0.0.1:5432) and Redis (REDIS_URL, default 127.0.0.1:6379/15).
# Usage: bash bench/foundation_health.sh [wrk duration, default 10s]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10s}"
port=18591
db="svbench_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
trap 'kill "${server:-0}" 2>/dev/null || true; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/$db}" \
       REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}" SCAIKEY_URL=http://127.0.0.1:9 BASE_URL=http://bench \
       KMS_PROVIDER=local KMS_LOCAL_KEY_FILE="/tmp/$db.key" BIND_ADDRESS="127.0.0.1:$port" \
       LOG_FORMAT=json LOG_LEVEL="${LOG_LEVEL:-info}" WEB_CONCURRENCY="${WEB_CONCURRENCY:-2}"
scaivault serve >/dev/null 2>&1 & server=$!
until curl -sf "http://127.0.0.1:$port/v1/health/ready" >/dev/null; do sleep 0.2; done
echo "== GET /v1/health, ${WEB_CONCURRENCY} workers, LOG_LEVEL=${LOG_LEVEL}, load: $(cut -d' ' -f1-3 /proc/loadavg)"
wrk -t2 -c32 -d"$duration" --latency "http://127.0.0.1:$port/v1/health"
kill -TERM "$server"; wait "$server" || true; server=0
rm -f "/tmp/$db.key"

dir="$(mktemp -d /tmp/scaivault-bench-dev-XXXX)"
( cd "$dir"; start=$(date +%s.%N)
  scaivault dev --bind 127.0.0.1:$port >/dev/null 2>&1 & dev=$!
  until curl -sf "http://127.0.0.1:$port/v1/health/ready" >/dev/null; do sleep 0.05; done
  echo "== scaivault dev ready from an empty directory in $(echo "$(date +%s.%N) - $start" | bc) s"
  kill -INT "$dev"; wait "$dev" || true )
rm -rf "$dir"
