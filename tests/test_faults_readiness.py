"""Readiness tells the truth: it answers "can this instance serve requests now".

An audit log that cannot be written is 503 (requests all fail); Redis loss is 200 degraded
(requests all succeed); after a PostgreSQL restart readiness is green as soon as requests
succeed, because it checks through the same pool; the KMS is 503 only when no key is usable.
The database is a private cluster of this module (restarted without touching anyone else's).
"""
from __future__ import annotations

import secrets
import time

import pytest

from scaivault.config import DatabaseURL
from scaivault.migrate import MigrationRunner
from tests.drills.harness import MotoProcess, PrivatePostgres
from tests.secrets_support import Callers


@pytest.fixture(scope="module")
def cluster():
    pg = PrivatePostgres().start()
    yield pg
    pg.destroy()


def service_role_database(cluster) -> tuple[str, str, str]:
    """A migrated database used through a non-owner login role, as production should run.

    Returns (service URL, admin URL, role name)."""
    name = cluster.create_database()
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", cluster.url(name))).apply()
    role = "sv_svc_" + secrets.token_hex(3)
    conn = cluster.admin(name)
    try:
        conn.run(f"CREATE ROLE {role} LOGIN")
        conn.run(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.run(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        conn.run(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    finally:
        conn.close()
    return cluster.url(name, user=role), cluster.url(name), role


def set_audit_insert(cluster, admin_url: str, role: str, allowed: bool) -> None:
    conn = cluster.admin(admin_url.rsplit("/", 1)[1].split("?")[0])
    try:
        conn.run(f"{'GRANT' if allowed else 'REVOKE'} INSERT ON audit_log {'TO' if allowed else 'FROM'} {role}")
    finally:
        conn.close()


def test_an_audit_log_that_cannot_be_written_makes_readiness_503_and_requests_fail(make_app, cluster, scaikey):
    url, admin_url, role = service_role_database(cluster)
    app = make_app(DATABASE_URL=url)
    client = app.test_client()
    caller = Callers(scaikey, client).admin("tnt_ready_audit")
    assert caller.put("/v1/secrets/a", json={"data": {"v": 1}}).status_code == 201
    assert client.get("/v1/health/ready").status_code == 200
    set_audit_insert(cluster, admin_url, role, allowed=False)
    try:
        response = client.get("/v1/health/ready")
        body = response.get_json()
        assert response.status_code == 503, body
        assert body["checks"]["audit"] == "error" and body["checks"]["database"] == "ok"
        assert "permission denied" in body["errors"]["audit"]
        # what readiness said is what requests see
        assert caller.get("/v1/secrets/a").get_json()["error"]["code"] == "audit_unavailable"
    finally:
        set_audit_insert(cluster, admin_url, role, allowed=True)
    assert client.get("/v1/health/ready").status_code == 200
    # the probe left nothing behind: no entry, no chain head
    conn = cluster.admin(admin_url.rsplit("/", 1)[1].split("?")[0])
    try:
        assert conn.run("SELECT count(*) FROM audit_log WHERE action = 'readiness_probe'")[0][0] == 0
        assert conn.run("SELECT count(*) FROM audit_chain_heads WHERE chain_key = '~readiness-probe'")[0][0] == 0
    finally:
        conn.close()


def test_after_a_postgresql_restart_readiness_is_green_as_soon_as_requests_succeed(make_app, cluster, scaikey):
    url, _, _ = service_role_database(cluster)
    app = make_app(DATABASE_URL=url)
    client = app.test_client()
    caller = Callers(scaikey, client).admin("tnt_ready_pg")
    assert caller.put("/v1/secrets/pg", json={"data": {"v": 1}}).status_code == 201
    for _ in range(3):       # several pooled connections, all to be cut by the restart
        assert client.get("/v1/health/ready").status_code == 200
    cluster.restart()
    restarted = time.monotonic()
    first_ready = first_request = None
    while (first_ready is None or first_request is None) and time.monotonic() - restarted < 20:
        if first_ready is None and client.get("/v1/health/ready").status_code == 200:
            first_ready = time.monotonic() - restarted
        if first_request is None and caller.get("/v1/secrets/pg").status_code == 200:
            first_request = time.monotonic() - restarted
    assert first_ready is not None and first_request is not None
    # the very first probe after the restart already succeeds, as the first request does
    assert first_ready < 1.0 and first_request < 1.0, (first_ready, first_request)


def test_the_kms_is_503_only_when_no_key_is_usable(make_app, databases, scaikey):
    moto = MotoProcess().start()
    try:
        key_id = moto.create_key()
        url = databases.create()
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        env = {"DATABASE_URL": url, "KMS_LOCAL_KEY_FILE": None, "KMS_TIMEOUT": "1", "KMS_RETRIES": "1",
               **moto.env(key_id)}
        warm = make_app(**env)
        caller = Callers(scaikey, warm.test_client()).admin("tnt_ready_kms")
        assert caller.put("/v1/secrets/k", json={"data": {"v": 1}}).status_code == 201
        cold = make_app(**env)
        moto.pause()
        try:
            warm_ready = warm.test_client().get("/v1/health/ready")
            assert warm_ready.status_code == 200, warm_ready.get_json()
            assert warm_ready.get_json()["checks"]["encryption"] == "degraded"
            assert caller.get("/v1/secrets/k").status_code == 200
            started = time.monotonic()
            cold_ready = cold.test_client().get("/v1/health/ready")
            assert cold_ready.status_code == 503 and cold_ready.get_json()["checks"]["encryption"] == "error"
            assert time.monotonic() - started < 4.0
        finally:
            moto.resume()
    finally:
        moto.stop()
