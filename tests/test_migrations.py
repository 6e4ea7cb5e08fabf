"""Migrations: forward-only SQL files, applied once under an advisory lock, recorded with checksums;
a schema ahead of the code, a changed file or (with --no-migrate) pending files refuse to start."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pg8000.native
import pytest

from scaivault.config import DatabaseURL
from scaivault.migrate import MigrationError, MigrationRunner, candidate_directories, load_migrations
from tests.foundation_support import CLI, child_env, run_cli

ROOT = Path(__file__).resolve().parent.parent


def _conn(url: str) -> pg8000.native.Connection:
    u = DatabaseURL.parse("DATABASE_URL", url)
    return pg8000.native.Connection(user=u.user, host=u.host, port=u.port, database=u.database)


def _applied(url: str) -> list[tuple[int, str, str]]:
    conn = _conn(url)
    try:
        return [tuple(r) for r in conn.run("SELECT version, name, checksum FROM schema_migrations ORDER BY version")]
    finally:
        conn.close()


def _execute(url: str, sql: str, **params) -> None:
    conn = _conn(url)
    try:
        conn.run(sql, **params)
    finally:
        conn.close()


def _serve_env(base_env: dict, database_url: str, **extra) -> dict:
    return {**base_env, "DATABASE_URL": database_url, **extra}


def test_migration_files_are_named_and_numbered_uniquely():
    migrations = load_migrations()
    assert migrations, "no migration files found"
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrations[0].version == 1


def test_migrate_applies_every_file_once_and_records_version_name_checksum(fresh_database_url):
    result = run_cli(["migrate"], {"DATABASE_URL": fresh_database_url, "LOG_FORMAT": "text"})
    assert result.returncode == 0, result.stderr
    files = load_migrations()
    assert f"applied {len(files)} migration(s)" in result.stdout
    assert _applied(fresh_database_url) == [(m.version, m.name, m.checksum) for m in files]

    again = run_cli(["migrate"], {"DATABASE_URL": fresh_database_url})
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout


@pytest.mark.slow
def test_three_migrate_processes_started_together_apply_each_migration_once(fresh_database_url):
    env = child_env({"DATABASE_URL": fresh_database_url, "LOG_FORMAT": "text", "LOG_LEVEL": "warn"})
    procs = [subprocess.Popen(CLI + ["migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert all(err.strip() == "" for _, err in outputs), [err for _, err in outputs]
    files = load_migrations()
    counts = sorted(int(out.split()[1]) for out, _ in outputs)
    assert counts == [0, 0, len(files)]          # one process did the work, the others found none left
    applied = _applied(fresh_database_url)
    assert [v for v, _, _ in applied] == [m.version for m in files]


def test_a_database_ahead_of_the_code_refuses_to_start_and_names_the_version(base_env, fresh_database_url):
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url)).apply()
    _execute(fresh_database_url, "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')")
    result = run_cli(["serve"], _serve_env(base_env, fresh_database_url))
    assert result.returncode == 3
    assert "9999" in result.stderr and "ahead" in result.stderr
    migrate = run_cli(["migrate"], {"DATABASE_URL": fresh_database_url})
    assert migrate.returncode == 3 and "9999" in migrate.stderr


def test_a_changed_migration_file_refuses_to_start(base_env, fresh_database_url):
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url)).apply()
    _execute(fresh_database_url, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    result = run_cli(["serve"], _serve_env(base_env, fresh_database_url))
    assert result.returncode == 3
    assert "checksum" in result.stderr and "version(s) 1" in result.stderr


@pytest.mark.parametrize("how", ["--no-migrate", "MIGRATE_ON_START=false"])
def test_pending_migrations_without_auto_migrate_refuse_and_say_run_migrate(base_env, fresh_database_url, how):
    args, extra = (["serve", "--no-migrate"], {}) if how == "--no-migrate" else (["serve"], {"MIGRATE_ON_START": "false"})
    result = run_cli(args, _serve_env(base_env, fresh_database_url, **extra))
    assert result.returncode == 3
    assert "pending" in result.stderr and "scaivault migrate" in result.stderr
    assert _table_missing(fresh_database_url, "schema_migrations")


def _table_missing(url: str, table: str) -> bool:
    conn = _conn(url)
    try:
        return conn.run("SELECT to_regclass(:t) IS NULL", t=table)[0][0]
    finally:
        conn.close()


def test_a_failing_migration_rolls_back_and_stops_the_run(fresh_database_url, tmp_path):
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    (tmp_path / "0003_never.sql").write_text("CREATE TABLE never (id int);")
    runner = MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url), tmp_path)
    with pytest.raises(MigrationError, match="0002_bad"):
        runner.apply()
    assert [v for v, _, _ in _applied(fresh_database_url)] == [1]
    assert _table_missing(fresh_database_url, "half") and _table_missing(fresh_database_url, "never")


def test_a_badly_named_migration_file_is_refused(tmp_path):
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        load_migrations(tmp_path)


def test_installed_copies_are_looked_up_under_share_scaivault():
    candidates = [str(c) for c in candidate_directories()]
    assert candidates[0] == str(ROOT / "migrations_sql")
    assert all(c.endswith("share/scaivault/migrations_sql") for c in candidates[1:])


@pytest.mark.slow
def test_the_wheel_ships_the_migrations_as_data_files(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("scaivault-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.rsplit("/", 1)[-1] for n in names if "/data/share/scaivault/migrations_sql/" in n}
    assert shipped == {p.name for p in (ROOT / "migrations_sql").glob("*.sql")}
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "scaivault = scaivault.cli:main" in entry_points
