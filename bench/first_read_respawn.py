"""First secret read of a respawned worker against a warm worker's (issue 18, item 4).

`scaivault serve` with one worker on the local PostgreSQL and Redis (a database it creates and
drops), the ScaiKey stand-in from tests/. A user bound to a policy (so its reads evaluate
compiled policies) writes one secret; then, ROUNDS times: warm reads (new TCP connection each,
median), one read of the same identity after 1.5 s idle (its rate-limit lease lapsed, as the
respawned worker's first read below also finds it), kill -9 of the worker, wait until the replacement logged "worker warmed up", then its
first, second and third read. Also: the first read of a brand-new identity on a warm worker (the
per-identity part that no warm-up can remove: its token's signature, its identity rows).

Usage: python bench/first_read_respawn.py [--rounds 8] [--warmup 15s]
Prints medians and ranges in milliseconds; not a test (no assertion on speed).
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pg8000.native
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

from scaivault.config import DatabaseURL  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from tests.drills.harness import Instance  # noqa: E402
from tests.scaikey_standin import ScaiKeyStandin  # noqa: E402
from tests.secrets_support import HIGH_RATE_LIMITS  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432"


def timed(method: str, url: str, token: str, **kw) -> tuple[float, int]:
    started = time.perf_counter()
    response = requests.request(method, url, headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                                timeout=30, **kw)
    return (time.perf_counter() - started) * 1000, response.status_code


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values):6.1f} ms  (min {min(values):6.1f}, max {max(values):6.1f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", default="15s")
    args = parser.parse_args()
    name = f"svbench_{os.getpid()}"
    admin = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=5432, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    url = f"{PG}/{name}?sslmode=disable"
    scaikey = ScaiKeyStandin().start()
    keydir = tempfile.mkdtemp(prefix="sv-bench-kms-")
    instance = None
    try:
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        env = {"DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:6379/{1 + os.getpid() % 14}",
               "SCAIKEY_URL": scaikey.url, "SCAIKEY_AUDIENCE": "scaivault",
               "IDENTITY_SYNC_WEBHOOK_SECRET": scaikey.webhook_secret, "BASE_URL": "http://127.0.0.1:8443",
               "KMS_PROVIDER": "local", "KMS_LOCAL_KEY_FILE": f"{keydir}/root.key", "LOG_FORMAT": "text",
               "LOG_LEVEL": "info", "RATE_LIMITS": HIGH_RATE_LIMITS, "WORKER_WARMUP_TIMEOUT": args.warmup}
        instance = Instance(env, workers=1).start()
        base = instance.url
        tenant, partner = "tnt_bench", "ptn_bench"
        admin_token = scaikey.mint(sub="usr_admin", email="admin@bench.example", tenant_id=tenant, partner_id=partner,
                                   scopes=("secrets:read", "secrets:write", "policies:read", "policies:write"),
                                   role="tenant_admin")

        def user_token(n: int) -> str:
            return scaikey.mint(sub=f"usr_{n}", email=f"reader{n}@bench.example", tenant_id=tenant,
                                partner_id=partner, scopes=("secrets:read",))

        ah = {"Authorization": f"Bearer {admin_token}"}
        assert requests.put(f"{base}/v1/secrets/bench/one", json={"data": {"v": 1}}, headers=ah,
                            timeout=30).status_code in (200, 201)
        policy = requests.post(f"{base}/v1/policies", headers=ah, timeout=30,
                               json={"name": "readers", "rules": [{"path_pattern": "bench/*", "permissions": ["read"]}]})
        assert policy.status_code == 201, policy.text
        readers = 2 + args.rounds * 2
        for n in range(readers):
            bound = requests.post(f"{base}/v1/policies/{policy.json()['id']}/bindings", headers=ah, timeout=30,
                                  json={"identity_type": "user", "identity_id": f"user:reader{n}@bench.example"})
            assert bound.status_code == 201, bound.text
        reader = user_token(0)
        secret = f"{base}/v1/secrets/bench/one"
        warm, idle, new_identity, firsts, seconds_, thirds, warmups = [], [], [], [], [], [], []
        for r in range(args.rounds):
            for _ in range(15):
                ms, status = timed("GET", secret, reader)
                assert status == 200, status
                warm.append(ms)
            # the same identity after a pause longer than a rate-limit lease (LEASE_SECONDS): what the
            # respawned worker's first read below is also, the identity idle for over a second
            time.sleep(1.5)
            ms, status = timed("GET", secret, reader)
            assert status == 200, status
            idle.append(ms)
            # a new identity on a warm worker: its own token verification, identity rows, policies
            ms, status = timed("GET", secret, user_token(2 + r))
            assert status == 200, status
            new_identity.append(ms)
            old = instance.worker_pids()
            done = instance.log().count("worker warmed up")
            os.kill(old[0], signal.SIGKILL)
            instance.wait_workers(1, exclude=tuple(old))
            deadline = time.monotonic() + 30
            while instance.log().count("worker warmed up") <= done and time.monotonic() < deadline:
                time.sleep(0.02)
            line = [x for x in instance.log().splitlines() if "worker warmed up" in x][-1]
            warmups.append(float(line.split("seconds=")[1].split()[0]) * 1000 if "seconds=" in line else float("nan"))
            time.sleep(0.3)                   # gunicorn's worker is accepting
            for series in (firsts, seconds_, thirds):
                ms, status = timed("GET", secret, reader)
                assert status == 200, status
                series.append(ms)
        load = os.getloadavg()
        print(f"first_read_respawn: {args.rounds} respawns, WORKER_WARMUP_TIMEOUT={args.warmup}, "
              f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        print(f"  warm worker, known identity      {fmt(warm)}")
        print(f"  warm worker, identity idle 1.5 s {fmt(idle)}")
        print(f"  warm worker, new identity        {fmt(new_identity)}")
        print(f"  respawned worker, first read     {fmt(firsts)}")
        print(f"  respawned worker, second read    {fmt(seconds_)}")
        print(f"  respawned worker, third read     {fmt(thirds)}")
        print(f"  warm-up duration                 {fmt(warmups)}")
        print(f"  first read / warm median         {statistics.median(firsts) / statistics.median(warm):.2f}x")
        print(f"  first read / idle-identity read  {statistics.median(firsts) / statistics.median(idle):.2f}x")
    finally:
        if instance is not None:
            instance.cleanup()
        scaikey.stop()
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')


if __name__ == "__main__":
    main()
