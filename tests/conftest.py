"""Shared fixtures: a throwaway PostgreSQL database per test session, Redis, app factories.

Every test session creates its own databases (svtest_<random>) on the local server and
drops them at the end; nothing else on the server is touched.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pg8000.native
import pytest

from scaivault.app import create_app
from scaivault.config import DatabaseURL, load_settings
from scaivault.migrate import MigrationRunner
from scaivault.ratelimit import CATEGORIES

ROOT = Path(__file__).resolve().parent.parent
# subprocesses (the CLI, served instances) run this checkout's code even when the editable
# install points at another clone (tests/run.sh in a second checkout re-points it)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _admin() -> pg8000.native.Connection:
    return pg8000.native.Connection(user=PG_USER, host=PG_HOST, port=PG_PORT, database="postgres")


def pg_url(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}?sslmode=disable"


class Databases:
    """Creates empty databases on demand and drops them all at the end of the session."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create(self) -> str:
        name = f"svtest_{os.getpid()}_{secrets.token_hex(4)}"
        conn = _admin()
        try:
            conn.run(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.created.append(name)
        return pg_url(name)

    def drop_all(self) -> None:
        conn = _admin()
        try:
            for name in self.created:
                conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
                conn.run(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            conn.close()


@pytest.fixture(scope="session")
def databases():
    dbs = Databases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def database_url(databases) -> str:
    """One migrated database shared by the session's app fixtures."""
    url = databases.create()
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    return url


@pytest.fixture
def fresh_database_url(databases) -> str:
    """An empty, unmigrated database for this test alone."""
    return databases.create()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return f"{REDIS_BASE}/{1 + os.getpid() % 14}"


@pytest.fixture(scope="session")
def scaikey(tmp_path_factory):
    """A running ScaiKey stand-in (tests/scaikey_standin.py): mint(...), directory, webhooks."""
    from tests.scaikey_standin import ScaiKeyStandin

    # no sync client in base_env: a server started by a test must not run a full sync of this
    # (empty) directory over the shared session database; sync tests use their own stand-in
    standin = ScaiKeyStandin().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="session")
def auth():
    """auth(token) -> the Authorization header for a bearer token."""
    return lambda token: {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def base_env(database_url, redis_url, tmp_path_factory, scaikey) -> dict[str, str]:
    """The environment a test instance starts from; tests override single variables."""
    keydir = tmp_path_factory.mktemp("kms")
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SCAIKEY_URL": scaikey.url,
        "SCAIKEY_AUDIENCE": "scaivault",   # the stand-in's tokens carry aud=scaivault; required outside dev
        "IDENTITY_SYNC_WEBHOOK_SECRET": scaikey.webhook_secret,
        "BASE_URL": "http://127.0.0.1:8443",
        "KMS_PROVIDER": "local",
        "KMS_LOCAL_KEY_FILE": str(keydir / "root.key"),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "warn",
        # Tests of one session share identities and Redis buckets; limits are tested by tests
        # that set RATE_LIMITS themselves (RATE_LIMITS="" restores the spec's defaults).
        "RATE_LIMITS": "\n".join(f"{c}: {{rate: 100000, window: 1m}}" for c in CATEGORIES),
    }


@pytest.fixture(scope="session")
def make_app(base_env):
    """make_app(**env_overrides) -> a Flask app on the session database (a fresh instance)."""
    apps = []

    def factory(**overrides):
        env = {**base_env, **{k: v for k, v in overrides.items() if v is not None}}
        app = create_app(load_settings(env))
        apps.append(app)
        return app

    factory.created = apps
    yield factory
    for app in apps:
        app.extensions["scaivault"].close()


@pytest.fixture(autouse=True)
def _close_apps_made_by_the_test(request):
    """Close the pools of apps a test made itself, so connections never pile up over a session.

    Apps of module- or session-scoped fixtures are made before this marker and stay open.
    """
    if "make_app" not in request.fixturenames:
        yield
        return
    factory = request.getfixturevalue("make_app")
    mark = len(factory.created)
    yield
    for app in factory.created[mark:]:
        app.extensions["scaivault"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
