"""Test helpers for the key hierarchy: migrated databases, settings, counting KMS providers."""
from __future__ import annotations

from collections import Counter

from scaivault.config import DatabaseURL, Settings, load_settings
from scaivault.crypto import Keyring, KmsProvider
from scaivault.crypto.sealed_columns import sealed_columns
from scaivault.db import Database
from scaivault.migrate import MigrationRunner
from scaivault.plugins import select


_SHARED: dict[int, str] = {}
KEY_TABLES = "kms_roots, partner_keys, tenant_keys, key_rotations, storage_objects"


def migrated_database(databases) -> str:
    """A migrated database with an empty key hierarchy, shared by the key tests of a session.

    DROP DATABASE costs seconds on this kind of machine, so the key tests share one database
    and empty the key tables (and their probe tables) instead of creating one per test.
    """
    url = _SHARED.get(id(databases))
    if url is None:
        url = _SHARED[id(databases)] = databases.create()
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    db = Database(DatabaseURL.parse("DATABASE_URL", url), pool_size=1)
    try:
        # values sealed under the keys being dropped go too: they could never be opened again
        sealed_tables = {c.table for c in sealed_columns()} | {"secrets"}
        present = [t for t in sorted(sealed_tables) if db.scalar("SELECT to_regclass(:t) IS NOT NULL", t=t)]
        db.execute(f"TRUNCATE {', '.join([KEY_TABLES, *present])} CASCADE")
        db.execute("DROP TABLE IF EXISTS probe, dump_probe")
    finally:
        db.close()
    return url


def settings_for(base_env: dict, database_url: str, **overrides: str | None) -> Settings:
    env = {**base_env, "DATABASE_URL": database_url}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return load_settings(env)


class CountingProvider(KmsProvider):
    """Delegates to a real provider and counts its KMS calls."""

    def __init__(self, inner: KmsProvider, calls: Counter):
        super().__init__(inner.key_ref)
        self.inner = inner
        self.name = inner.name
        self.calls = calls

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        self.calls["wrap"] += 1
        return self.inner.wrap(plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        self.calls["unwrap"] += 1
        return self.inner.unwrap(wrapped, aad)

    def rotate_key(self) -> bool:
        return self.inner.rotate_key()


def counting_keyring(settings: Settings, db: Database | None = None, **kw) -> tuple[Keyring, Counter]:
    calls: Counter = Counter()
    inner = select("scaivault_kms_providers", settings.kms_provider).factory

    def factory(s, key_ref):
        return CountingProvider(inner(s, key_ref), calls)

    db = db or Database(settings.database_url, pool_size=4)
    return Keyring(settings, db, factory, **kw), calls


class CountingDatabase:
    """A Database proxy counting the statements a code path sends."""

    def __init__(self, db: Database):
        self._db = db
        self.statements = 0

    def __getattr__(self, name):
        attr = getattr(self._db, name)
        if name in ("one", "query", "execute", "scalar", "read_query"):
            def counted(*args, **kwargs):
                self.statements += 1
                return attr(*args, **kwargs)
            return counted
        return attr
