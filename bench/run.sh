#!/usr/bin/env bash
# One command for the secrets benchmark: ScaiVault under `scaivault serve` (gunicorn + gevent,
# WEB_CONCURRENCY=2) with wrk -t2 -c32: ceiling, read, write, 90/10 mix, 100-path batch reads,
# listing with 100,000 secrets. Needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379 (as the
# tests do) and wrk. Usage: bash bench/run.sh [--duration 15] [--only read,write,...]
#   bash bench/run.sh --pair [--duration 15]: OpenBao (../shared/bench/openbao_kv.sh, pgpool) and
#   then ScaiVault's read, write, mix and ceiling in the same sitting, one table with the ratios
#   (bench/pair.py), plus the in-process CPU per request.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [ "${1:-}" = "--pair" ]; then
  shift
  exec python3 bench/pair.py "$@"
fi
exec python3 bench/secrets_kv.py "$@"
