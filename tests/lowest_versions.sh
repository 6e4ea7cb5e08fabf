#!/usr/bin/env bash
# CI smoke step: a declared dependency range is a tested range (design.md invariant 13).
# Installs the LOWEST versions setup.cfg allows of the libraries ScaiVault patches or leans on
# (gunicorn, gevent, pg8000, flask-limiter, flask; the `server` extra) into a private virtualenv that sees the
# rest of the environment, and runs a smoke subset under them: a served instance answering well
# formed HTTP, the read path (one statement, audit chained), rate limits, the patches' checks.
# Usage: bash tests/lowest_versions.sh [pytest args...]   (run after tests/run.sh set things up)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-lowest
say() { echo "tests/lowest_versions.sh: $*" >&2; }

pins="$("$PYTHON" - <<'PY'
import configparser, re
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
wanted = {"gunicorn", "gevent", "pg8000", "flask-limiter", "flask"}
lines = cfg["options"]["install_requires"].split("\n") + cfg["options.extras_require"]["server"].split("\n")
for line in lines:
    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([\w.]+)", line)
    if m and m.group(1).lower() in wanted:
        print(f"{m.group(1)}=={m.group(2)}")
PY
)"
[ -n "$pins" ] || { say "no lower bounds found in setup.cfg"; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
say "installing $(echo $pins | tr '\n' ' ')"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --root-user-action=ignore $pins
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(gunicorn|gevent|pg8000|flask-limiter|flask) ' >&2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PATH="$PWD/$VENV/bin:$PATH" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  tests/test_patches.py tests/test_smoke.py tests/test_read_path.py tests/test_hot_routes.py \
  "tests/test_serving.py::test_serve_answers_the_health_endpoints_under_gunicorn_gevent" \
  "tests/test_serving.py::test_a_request_gunicorn_cannot_parse_gets_the_json_envelope" \
  "tests/test_ratelimit.py::test_the_sixth_request_within_a_limit_of_five_gets_429_with_headers" \
  "tests/test_ratelimit.py::test_a_limit_is_shared_by_two_instances_on_the_same_redis" \
  "$@"
