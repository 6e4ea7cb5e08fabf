"""In-process CPU per request: the app's WSGI callable called in a loop, one process, no HTTP.

The stable figure beside the wrk runs (less sensitive to a shared machine): CPU time
(time.process_time of this process, which includes the client side of PostgreSQL and Redis
round trips but not the servers' work) per secret read and per write, as a policy-scoped user with
audit on, called as a WSGI server calls the app (no test client). Sequential, so every
group-commit batch holds one request. Three apps in one process, measured in alternating blocks
so that a shared machine's drift falls on all alike: the ceiling (bench/ceiling.py, one pooled
query), ScaiVault (hot routes on: `read`, `write`) and ScaiVault with BARE_HOT_ROUTES=false
(`read_flask`, `write_flask`). Creates and drops its own database.
Usage: python bench/cpu_per_request.py [--reads 3000] [--writes 600] [--json-out F] [--profile F]
"""
from __future__ import annotations

import argparse
import io
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


def wsgi_caller(app, method: str, url: str, headers: dict, body: bytes = b""):
    """fn(i) calling `app` as a WSGI server would (no test client): url may use {i}; checks 2xx."""
    from werkzeug.test import EnvironBuilder

    templates = {}

    def call(i: int) -> None:
        target = url.format(i=i % 100)
        template = templates.get(target)
        if template is None:
            template = templates[target] = EnvironBuilder(path=target, method=method, headers=headers, data=body,
                                                          content_type="application/json" if body else None,
                                                          environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(body)
        status = []
        answer = app(environ, lambda s, h, exc_info=None: status.append(s))
        try:
            b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()
        if not status[0].startswith("20"):
            raise SystemExit(f"{method} {target}: {status[0]}")
    return call


def postgres_cpu(database: str) -> float:
    """CPU seconds (user + system) used so far by the PostgreSQL backends connected to `database`."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f" {database} ".encode() not in (proc / "cmdline").read_bytes().replace(b"\0", b" ") + b" ":
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def interleaved(fns: dict, n: int, rounds: int = 10, database: str | None = None) -> dict:
    """CPU us per call of each fn, measured in alternating blocks (drift on a shared machine cancels);
    with `database`, also `<name>_pg`: the CPU of that database's PostgreSQL backends per call."""
    spent = {name: 0.0 for name in fns}
    pg = {name: 0.0 for name in fns}
    block = max(1, n // rounds)
    for r in range(rounds):
        for name, fn in fns.items():
            pg_started = postgres_cpu(database) if database else 0.0
            started = time.process_time()
            for i in range(r * block, (r + 1) * block):
                fn(i)
            spent[name] += time.process_time() - started
            pg[name] += (postgres_cpu(database) - pg_started) if database else 0.0
    out = {name: round(total / (block * rounds) * 1e6) for name, total in spent.items()}
    if database:
        out.update({name + "_pg": round(total / (block * rounds) * 1e6) for name, total in pg.items()})
    return out


def profiled(fn, n: int, out: str) -> None:
    """cProfile (process CPU time as its clock) of `n` calls, saved for pstats."""
    import cProfile

    profile = cProfile.Profile(time.process_time)
    profile.runcall(lambda: [fn(i) for i in range(n)])
    profile.dump_stats(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=3000)
    ap.add_argument("--writes", type=int, default=600)
    ap.add_argument("--json-out")
    ap.add_argument("--profile", help="write cProfile stats (CPU time) of the read and write loops to F.read / F.write")
    args = ap.parse_args()
    name = f"svcpu_{secrets.token_hex(4)}"
    admin_conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=5432, database="postgres")
    admin_conn.run(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}?sslmode=disable"
    standin = ScaiKeyStandin().start()
    apps = []
    try:
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        workdir = Path(tempfile.mkdtemp(prefix="svcpu-"))
        env = {"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/15", "SCAIKEY_URL": standin.url,
               "SCAIKEY_AUDIENCE": "scaivault",
               "BASE_URL": "http://127.0.0.1:8443", "KMS_PROVIDER": "local",
               "KMS_LOCAL_KEY_FILE": str(workdir / "root.key"), "LOG_LEVEL": "error",
               "RATE_LIMITS": "\n".join(f"{c}: {{rate: 100000000, window: 1m}}" for c in CATEGORIES)}
        app = create_app(load_settings(env))                                   # hot routes (the default)
        flask_app = create_app(load_settings({**env, "BARE_HOT_ROUTES": "false"}))   # every request through Flask
        apps += [app, flask_app]
        os.environ.update(DATABASE_URL=url, BENCH_TENANT=TENANT)
        from bench.ceiling import app as ceiling_app
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
        body = json.dumps({"data": VALUE, "secret_type": "json"}).encode()
        reads = {"ceiling": wsgi_caller(ceiling_app, "GET", "/q?p=bench/app-{i:03d}/db", {})}
        writes = {}
        for label, each in (("", app), ("_flask", flask_app)):
            reads["read" + label] = wsgi_caller(each, "GET", "/v1/secrets/bench/app-{i:03d}/db", uh)
            writes["write" + label] = wsgi_caller(each, "PUT", "/v1/secrets/bench/app-{i:03d}/db", uh, body)
        for i in range(100):
            writes["write"](i)
        for i in range(200):      # warm: tokens verified, policies compiled, statements prepared
            for fn in (*reads.values(), writes["write_flask"]):
                fn(i)
        if args.profile:
            profiled(reads["read"], args.reads, args.profile + ".read")
            profiled(writes["write"], args.writes, args.profile + ".write")
        load = os.getloadavg()[0]
        out = {**interleaved(reads, args.reads, database=name), **interleaved(writes, args.writes, database=name)}
        out.update(read_to_ceiling=round(out["read"] / out["ceiling"], 2),
                   write_to_ceiling=round(out["write"] / out["ceiling"], 2), load=round(load, 1))
        print(json.dumps(out))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(out))
    finally:
        for each in apps:
            each.extensions["scaivault"].close()
        standin.stop()
        admin_conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin_conn.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin_conn.close()


if __name__ == "__main__":
    main()
