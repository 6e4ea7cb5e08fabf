"""Micro-benchmark of the key hierarchy's hot path: Keyring.seal / Keyring.open per second.

Creates a throwaway database (svbench_<pid>) on the test PostgreSQL, a local KMS key file,
then measures sealing and opening values of several sizes with cached keys (the read path),
opening with a cold key cache (partner + tenant unwrap, two queries), and raw AES-256-GCM as
the ceiling. Usage: python bench/seal_open.py [--seconds 2] [--pg postgresql://postgres@127.0.0.1:5432]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pg8000.native  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from scaivault.config import DatabaseURL, load_settings  # noqa: E402
from scaivault.crypto import SealContext, build_keyring  # noqa: E402
from scaivault.db import Database  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402


def rate(fn, seconds: float) -> float:
    """Calls per second of fn over about `seconds`."""
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            fn()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    name = f"svbench_{os.getpid()}"
    admin_url = DatabaseURL.parse("PG", f"{args.pg}/postgres")
    admin = pg8000.native.Connection(user=admin_url.user, host=admin_url.host, port=admin_url.port, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    keydir = tempfile.mkdtemp(prefix="svbench-")
    try:
        url = f"{args.pg}/{name}?sslmode=disable"
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        settings = load_settings({"DATABASE_URL": url, "KMS_PROVIDER": "local", "KMS_LOCAL_KEY_FILE": f"{keydir}/root.key",
                                  "LOG_LEVEL": "error"}, require_services=False)
        db = Database(settings.database_url, pool_size=2)
        keyring = build_keyring(settings, db)
        keyring.ensure_root()
        ctx = SealContext("ptn_bench", "tnt_bench", "secret", "bench/value", 1)
        print(f"ScaiVault keyring micro-benchmark, one thread, {args.seconds:g} s per figure")
        print(f"{'operation':<36}{'size':>9}{'ops/s':>12}{'us/op':>9}")
        for size in (64, 1024, 64 * 1024):
            value = os.urandom(size)
            sealed = keyring.seal(ctx, value)
            assert keyring.open(ctx, sealed) == value
            for label, fn in (("seal (cached tenant key)", lambda: keyring.seal(ctx, value)),
                              ("open (cached tenant key)", lambda: keyring.open(ctx, sealed))):
                r = rate(fn, args.seconds)
                print(f"{label:<36}{size:>9}{r:>12,.0f}{1e6 / r:>9.1f}")
        sealed = keyring.seal(ctx, b"x" * 64)

        def cold_open():
            keyring.cache.clear()
            keyring.open(ctx, sealed)

        r = rate(cold_open, args.seconds)
        print(f"{'open (cold cache: 2 queries + KMS)':<36}{64:>9}{r:>12,.0f}{1e6 / r:>9.1f}")
        aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
        r = rate(lambda: aead.encrypt(nonce, b"x" * 64, b"aad"), args.seconds)
        print(f"{'raw AES-256-GCM encrypt (ceiling)':<36}{64:>9}{r:>12,.0f}{1e6 / r:>9.1f}")
        keyring.close()
        db.close()
    finally:
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
        for f in Path(keydir).iterdir():
            f.unlink()
        os.rmdir(keydir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
