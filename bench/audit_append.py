"""Audit writer benchmark: durable appends per second through scaivault.audit.record.

Each worker thread holds one pooled connection and appends entries in autocommit (one INSERT
statement and one commit per entry, as a secret read does), all in one tenant, so the hash-chain
lanes are exercised exactly as on the read path. Also times a full chain verification.
Creates and drops its own database.

Usage: python bench/audit_append.py [--seconds 5] [--threads 1,8,16,32]
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import pg8000.native

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaivault.audit import AuditEntry, record  # noqa: E402
from scaivault.audit.chain import verify_chain  # noqa: E402
from scaivault.config import DatabaseURL  # noqa: E402
from scaivault.db import Database  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402

PG = dict(user=os.environ.get("BENCH_PG_USER", "postgres"), host=os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
          port=int(os.environ.get("BENCH_PG_PORT", "5432")))


def run(db: Database, tenant: str, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with db.session() as s:
            while time.monotonic() < stop:
                record(s, AuditEntry(action="read", tenant_id=tenant, partner_id="ptn_bench",
                                     identity_type="service_account", identity_id="sa:bench",
                                     secret_path="db/prod/password", source_ip="10.0.0.1",
                                     user_agent="bench", request_id="req_bench", duration_ms=1,
                                     extra_data={"version": 3}))
                counts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", default="1,8,16,32")
    args = parser.parse_args()
    name = "svbench_audit_" + secrets.token_hex(4)
    admin = pg8000.native.Connection(database="postgres", **PG)
    admin.run(f'CREATE DATABASE "{name}"')
    url = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}?sslmode=disable"
    try:
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        levels = [int(x) for x in args.threads.split(",")]
        db = Database(DatabaseURL.parse("DATABASE_URL", url), pool_size=max(levels))
        tenant = "tnt_bench"
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print("| connections | durable appends/s |\n|---|---|")
        for n in levels:
            print(f"| {n} | {run(db, tenant, n, args.seconds):.0f} |")
        total = db.scalar("SELECT count(*) FROM audit_log")
        started = time.monotonic()
        report = verify_chain(db, tenant)
        elapsed = time.monotonic() - started
        print(f"\nverify: {report.checked} entries in {report.lanes} lanes, valid={report.valid}, "
              f"{elapsed:.2f} s ({report.checked / max(elapsed, 1e-9):.0f} entries/s); table holds {total}")
        db.close()
    finally:
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


if __name__ == "__main__":
    main()
