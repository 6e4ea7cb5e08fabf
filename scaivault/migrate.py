"""Forward-only plain-SQL migrations from migrations_sql/NNNN_name.sql.

Each file runs in its own transaction and is recorded (version, name, checksum, time) in
`schema_migrations`. The whole run holds a PostgreSQL advisory lock, so instances starting
together apply each file exactly once. A database that knows a version the code does not,
or whose recorded checksum differs from the file, is refused: the operator must look.
"""
from __future__ import annotations

import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import DatabaseURL
from .db import connect

log = logging.getLogger("scaivault.migrate")

# Any constant works; it only has to be the same in every instance.
ADVISORY_LOCK_KEY = 0x5CA1_7A17
FILENAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def candidate_directories() -> list[Path]:
    """Where migrations may live: the source checkout, then pip's data directories
    (setup.cfg ships them as data_files share/scaivault/migrations_sql)."""
    import site
    import sysconfig

    installed = [Path(sysconfig.get_paths()["data"]), Path(sys.prefix), Path(site.getuserbase())]
    return [Path(__file__).resolve().parent.parent / "migrations_sql"] + [
        prefix / "share" / "scaivault" / "migrations_sql" for prefix in installed]


def default_directory() -> Path:
    """The first candidate directory that exists (an error names them all when none does)."""
    candidates = candidate_directories()
    for directory in candidates:
        if directory.is_dir():
            return directory
    raise MigrationError("no migrations_sql directory found (looked in "
                         + ", ".join(str(c) for c in candidates) + "); reinstall ScaiVault")


class MigrationError(Exception):
    """The schema is in a state this code must not run against."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class SchemaState:
    pending: tuple[Migration, ...]
    unknown_versions: tuple[int, ...]      # applied in the database, absent from the code
    changed_versions: tuple[int, ...]      # applied with a checksum the file no longer has

    @property
    def problem(self) -> str | None:
        if self.unknown_versions:
            return (f"database schema is ahead of this ScaiVault: applied migration version(s) "
                    f"{', '.join(map(str, self.unknown_versions))} unknown to this release; run a newer release")
        if self.changed_versions:
            return (f"migration file(s) changed after being applied: version(s) "
                    f"{', '.join(map(str, self.changed_versions))} (checksum mismatch)")
        return None


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or default_directory()
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        m = FILENAME_RE.match(path.name)
        if not m:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_name.sql")
        migrations.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


class MigrationRunner:
    """Compares and applies migrations against one database."""

    def __init__(self, url: DatabaseURL, directory: Path | None = None):
        self.url = url
        self.migrations = load_migrations(directory)

    def _applied(self, conn) -> dict[int, str]:
        exists = conn.run("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]
        if not exists:
            return {}
        return {v: c for v, c in conn.run("SELECT version, checksum FROM schema_migrations")}

    def _state(self, conn) -> SchemaState:
        applied = self._applied(conn)
        known = {m.version: m for m in self.migrations}
        return SchemaState(
            pending=tuple(m for m in self.migrations if m.version not in applied),
            unknown_versions=tuple(sorted(v for v in applied if v not in known)),
            changed_versions=tuple(sorted(v for v, c in applied.items() if v in known and known[v].checksum != c)),
        )

    def state(self) -> SchemaState:
        conn = connect(self.url, timeout=10)
        try:
            return self._state(conn)
        finally:
            conn.close()

    def apply(self) -> list[Migration]:
        """Apply every pending migration under the advisory lock; returns what this call applied."""
        conn = connect(self.url, timeout=300)
        applied: list[Migration] = []
        try:
            conn.run("SELECT pg_advisory_lock(:k)", k=ADVISORY_LOCK_KEY)
            try:
                conn.run(_CREATE_TABLE)
                state = self._state(conn)
                if state.problem:
                    raise MigrationError(state.problem)
                for migration in state.pending:
                    conn.run("BEGIN")
                    try:
                        conn.execute_simple(migration.sql)
                        conn.run(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)",
                            v=migration.version, n=migration.name, c=migration.checksum,
                        )
                        conn.run("COMMIT")
                    except Exception as exc:
                        conn.run("ROLLBACK")
                        raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from None
                    log.info("applied migration", extra={"version": migration.version, "migration": migration.name})
                    applied.append(migration)
            finally:
                conn.run("SELECT pg_advisory_unlock(:k)", k=ADVISORY_LOCK_KEY)
        finally:
            conn.close()
        return applied
