"""In-process CPU per request: the app's WSGI callable called in a loop, one process, no HTTP.

The stable figure beside the wrk runs (less sensitive to a shared machine): CPU time
(time.process_time of this process, which includes the client side of PostgreSQL and Redis
round trips but not the servers' work) per secret read and per write, as a policy-scoped user with
audit on. Sequential, so every group-commit batch holds one request. Creates and drops its own
database. Usage: python bench/cpu_per_request.py [--reads 3000] [--writes 600] [--json-out F]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import pg8000.native

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaivault.app import create_app  # noqa: E402
from scaivault.config import DatabaseURL, load_settings  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from scaivault.ratelimit import CATEGORIES  # noqa: E402
from tests.scaikey_standin import ScaiKeyStandin  # noqa: E402

TENANT, PARTNER = "tnt_cpu", "ptn_cpu"
VALUE = {"username": "svc_reporting", "password": "x" * 64, "host": "db.internal.example", "port": 5432,
         "options": "sslmode=require&application_name=reporting-service"}


def per_call_us(fn, n: int) -> float:
    started = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=3000)
    ap.add_argument("--writes", type=int, default=600)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    name = f"svcpu_{secrets.token_hex(4)}"
    admin_conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=5432, database="postgres")
    admin_conn.run(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}?sslmode=disable"
    standin = ScaiKeyStandin().start()
    app = None
    try:
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        workdir = Path(tempfile.mkdtemp(prefix="svcpu-"))
        env = {"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/15", "SCAIKEY_URL": standin.url,
               "SCAIKEY_AUDIENCE": "scaivault",
               "BASE_URL": "http://127.0.0.1:8443", "KMS_PROVIDER": "local",
               "KMS_LOCAL_KEY_FILE": str(workdir / "root.key"), "LOG_LEVEL": "error",
               "RATE_LIMITS": "\n".join(f"{c}: {{rate: 100000000, window: 1m}}" for c in CATEGORIES)}
        app = create_app(load_settings(env))
        client = app.test_client()
        admin = standin.mint(sub="usr_cpu_admin", email="admin@cpu.example", tenant_id=TENANT, partner_id=PARTNER,
                             role="tenant_admin", expires_in=86400,
                             scopes=("secrets:read", "secrets:write", "policies:read", "policies:write"))
        user = standin.mint(sub="usr_cpu", email="cpu@cpu.example", tenant_id=TENANT, partner_id=PARTNER,
                            expires_in=86400, scopes=("secrets:read", "secrets:write"))
        ah, uh = {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {user}"}
        policy = client.post("/v1/policies", headers=ah, json={
            "name": "cpu", "rules": [{"path_pattern": "bench/**", "permissions": ["read", "write"]}]}).get_json()
        client.post(f"/v1/policies/{policy['id']}/bindings", headers=ah,
                    json={"identity_type": "user", "identity_id": "user:cpu@cpu.example"})
        body = {"data": VALUE, "secret_type": "json"}
        for i in range(100):
            assert client.put(f"/v1/secrets/bench/app-{i:03d}/db", headers=uh, json=body).status_code in (200, 201)
        for i in range(200):      # warm: tokens verified, policies compiled, statements prepared
            assert client.get(f"/v1/secrets/bench/app-{i % 100:03d}/db", headers=uh).status_code == 200
        read_us = per_call_us(lambda i: client.get(f"/v1/secrets/bench/app-{i % 100:03d}/db", headers=uh), args.reads)
        write_us = per_call_us(lambda i: client.put(f"/v1/secrets/bench/app-{i % 100:03d}/db", headers=uh, json=body),
                               args.writes)
        out = {"read_us": round(read_us), "write_us": round(write_us), "load": os.getloadavg()[0]}
        print(json.dumps(out))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(out))
    finally:
        if app is not None:
            app.extensions["scaivault"].close()
        standin.stop()
        admin_conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin_conn.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin_conn.close()


if __name__ == "__main__":
    main()
