#!/usr/bin/env bash
# The README's test command. On a fresh Debian machine it installs what the tests need, starts
# PostgreSQL and Redis if they are down, installs ScaiVault with its `server` and `test` extras and runs pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { echo "tests/run.sh: $*" >&2; }

# ---------------------------------------------------------------- Python (PEP 668 aware)
PYTHON="${PYTHON:-python3}"
need_apt=()
if "$PYTHON" - <<'EOF'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
EOF
then
  # Debian's own interpreter refuses pip installs: use a project virtualenv instead
  "$PYTHON" -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
  USE_VENV=1
fi

# ---------------------------------------------------------------- Debian packages
# One line per need: the command that must exist and the package that provides it.
need() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
need pg_ctlcluster postgresql
need psql postgresql-client
need redis-server redis-server
need redis-cli redis-tools
need softhsm2-util softhsm2
need npm npm                 # Azurite (Azure Blob) for tests/test_storage_azure_blob.py
need pebble pebble           # ACME server for tests/test_acme_*.py (with pebble-challtestsrv)
need named bind9             # authoritative DNS with TSIG dynamic updates for tests/test_acme_dns01.py
need openssl openssl         # `openssl verify` of issued chains in tests/test_pki_*.py
need chromium chromium       # the admin UI's browser tests (tests/test_ui_browser.py, Playwright)
need nginx nginx-light       # the fleet drill (tests/drills/test_fleet.py): three instances behind nginx
need mariadb-install-db mariadb-server-core   # a private mariadbd for tests/test_dynamic_credentials.py
if [ "${#need_apt[@]}" -gt 0 ]; then
  say "installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ "${USE_VENV:-0}" = 1 ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  PYTHON=.venv/bin/python
fi

# ---------------------------------------------------------------- PostgreSQL
pg_trusts() { psql -h 127.0.0.1 -p "$1" -U postgres -w -Atqc 'select 1' postgres >/dev/null 2>&1; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }

if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  if [ -n "$version" ]; then
    say "starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
fi
if ! pg_trusts 5432; then
  # The tests connect as `postgres` without a password. Debian's cluster asks for one over TCP,
  # so rather than change the system cluster, run a private throwaway one with trust auth.
  port=5433
  if ! pg_trusts "$port"; then
    bin="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -n1)/bin"
    dir=/tmp/scaivault-test-pg
    say "starting a private PostgreSQL (trust auth) on 127.0.0.1:$port in $dir"
    if [ "$(id -u)" -eq 0 ]; then install -d -o postgres -g postgres "$dir"; else mkdir -p "$dir"; fi
    [ -f "$dir/data/PG_VERSION" ] || as_postgres "$bin/initdb -D $dir/data -U postgres --auth=trust -E UTF8 >/dev/null"
    as_postgres "$bin/pg_ctl -D $dir/data -l $dir/pg.log -w start -o '-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300' >/dev/null"
  fi
  export TEST_PG_PORT="$port"
fi

# ---------------------------------------------------------------- Redis
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi

# ---------------------------------------------------------------- ScaiVault and its test extra
if ! "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[server,test]'; then
  say "pip install -e '.[server,test]' failed"
  exit 1
fi

# ---------------------------------------------------------------- Azurite (Azure Blob stand-in)
# 3.x: the newest Azurite wants node >= 22; npm picks the release that runs on this node
if [ ! -x tests/tools/node_modules/.bin/azurite-blob ]; then
  say "installing azurite@3 into tests/tools"
  mkdir -p tests/tools
  npm install --prefix tests/tools --no-save --no-package-lock --no-audit --no-fund --silent azurite@3
fi

# ---------------------------------------------------------------- the tests
# this checkout's code, also in subprocesses, whichever clone the editable install points at
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set +e
"$PYTHON" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  say "pytest collected no tests: that is a failure, not a pass"
  exit 1
fi
exit "$status"
