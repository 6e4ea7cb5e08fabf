"""Authenticated hot path: `GET /v1/auth/whoami` under `scaivault serve` (gunicorn + gevent) with wrk.

Runs against the local PostgreSQL and Redis (as the tests do), in a database it creates and
drops, with the ScaiKey stand-in from tests/. Usage: python bench/auth_whoami.py [seconds]
Prints requests/second for a ScaiKey JWT and for a personal access token.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pg8000.native
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaivault.config import DatabaseURL  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from tests.scaikey_standin import ScaiKeyStandin  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrk(url: str, token: str, seconds: int) -> str:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url],
                         capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = re.search(r"Latency\s+(\S+)", out).group(1)
    return f"{rate} req/s (avg latency {latency}, non-2xx {non2xx.group(1) if non2xx else 0})"


def _in_process(env: dict, jwt_token: str, pat: str) -> str:
    """Microseconds per authenticate() + tenant resolution once the token is cached (no HTTP)."""
    from scaivault.auth import tenancy
    from scaivault.config import load_settings
    from scaivault.runtime import Runtime

    runtime = Runtime(load_settings(env))
    try:
        results = []
        for label, token in (("JWT", jwt_token), ("PAT", pat)):
            authenticator = runtime.authenticator
            authenticator.authenticate(token)
            n = 50_000
            started = time.perf_counter()
            for _ in range(n):
                identity = authenticator.authenticate(token)
                tenancy.resolve(identity, authenticator.tenant, None, None)
            results.append(f"{label} {(time.perf_counter() - started) / n * 1e6:.1f} us")
        return ", ".join(results)
    finally:
        runtime.close()


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    name = f"svbench_{secrets.token_hex(4)}"
    admin = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=5432, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}?sslmode=disable"
    standin = ScaiKeyStandin().start()
    server = None
    try:
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        port = _free_port()
        keydir = tempfile.mkdtemp()
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/15", "SCAIKEY_URL": standin.url,
               "BASE_URL": f"http://127.0.0.1:{port}", "BIND_ADDRESS": f"127.0.0.1:{port}", "KMS_PROVIDER": "local",
               "KMS_LOCAL_KEY_FILE": f"{keydir}/root.key", "WEB_CONCURRENCY": "2", "LOG_LEVEL": "error",
               "RATE_LIMITS": "auth: {rate: 100000000, window: 1m}"}
        server = subprocess.Popen([sys.executable, "-m", "scaivault.cli", "serve"], env=env, cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(base + "/v1/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        jwt_token = standin.mint(sub="usr_bench", email="bench@acme.example", tenant_id="tnt_bench",
                                 partner_id="ptn_bench", scopes=("secrets:read",))
        resp = requests.get(base + "/v1/auth/whoami", headers={"Authorization": f"Bearer {jwt_token}"}, timeout=5)
        assert resp.status_code == 200, resp.text
        pat = requests.post(base + "/v1/auth/tokens", json={"name": "bench", "scopes": ["secrets:read"]},
                            headers={"Authorization": f"Bearer {jwt_token}"}, timeout=5).json()["token"]
        print("in process, cached token -> Identity:", _in_process(env, jwt_token, pat))
        print("health (no auth):", _wrk(base + "/v1/health", "x", seconds))
        print("whoami, ScaiKey JWT:", _wrk(base + "/v1/auth/whoami", jwt_token, seconds))
        print("whoami, personal token:", _wrk(base + "/v1/auth/whoami", pat, seconds))
        print("whoami, ScaiKey JWT again (order effects):", _wrk(base + "/v1/auth/whoami", jwt_token, seconds))
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        standin.stop()
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


if __name__ == "__main__":
    main()
