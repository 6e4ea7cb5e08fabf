"""The audit writer: one statement per entry, per-tenant hash chains, fail-closed."""
from __future__ import annotations

import secrets
import threading

import pg8000.native
import pytest

from scaivault.audit import AuditEntry, record, record_now
from scaivault.audit.chain import verify_chain
from scaivault.audit.writer import CHAIN_LANES
from scaivault.config import DatabaseURL, load_settings
from scaivault.db import Database
from scaivault.errors import ScaiVaultError
from scaivault.runtime import Runtime


@pytest.fixture
def runtime(base_env):
    rt = Runtime(load_settings(base_env))
    yield rt
    rt.close()


def tenant() -> str:
    return "t_" + secrets.token_hex(5)


def entry(tenant_id: str, action: str = "read", **kw) -> AuditEntry:
    defaults = dict(identity_type="service_account", identity_id="sa:reporting", secret_path="db/prod/password",
                    source_ip="10.0.0.7", user_agent="scaivault-python/1.0.0", request_id="req_" + secrets.token_hex(4),
                    duration_ms=3, partner_id="p_acme", extra_data={"version": 3, "ratio": 0.25, "tags": ["a", "b"]})
    defaults.update(kw)
    return AuditEntry(action=action, tenant_id=tenant_id, **defaults)


def test_an_entry_is_stored_with_every_field_of_the_spec(runtime):
    t = tenant()
    e = entry(t, success=False, extra_data={"error": "access_denied"})
    record_now(runtime, e)
    row = runtime.db.one("SELECT * FROM audit_log WHERE id = :id", id=e.id)
    assert row["id"].startswith("log_")
    assert row["tenant_id"] == t and row["partner_id"] == "p_acme"
    assert row["action"] == "read" and row["success"] is False
    assert row["identity_type"] == "service_account" and row["identity_id"] == "sa:reporting"
    assert row["secret_path"] == "db/prod/password" and row["source_ip"] == "10.0.0.7"
    assert row["user_agent"] == "scaivault-python/1.0.0" and row["request_id"] == e.request_id
    assert row["duration_ms"] == 3 and row["extra_data"] == {"error": "access_denied"}
    assert row["chain_seq"] == 1 and bytes(row["prev_hash"]) == bytes(32) and len(bytes(row["entry_hash"])) == 32


def test_entries_of_a_tenant_form_a_verifiable_chain(runtime):
    t = tenant()
    for i in range(25):
        record_now(runtime, entry(t, extra_data={"i": i, "big": 1e300, "nested": {"z": 1, "a": [1.5, None]}}))
    report = verify_chain(runtime.db, t)
    assert report.valid, report.first_break
    assert report.checked == 25


def test_writing_inside_a_transaction_commits_with_the_change_and_rolls_back_with_it(runtime):
    t = tenant()
    with runtime.db.transaction() as tx:
        record(tx, entry(t, action="write"))
    with pytest.raises(RuntimeError):
        with runtime.db.transaction() as tx:
            record(tx, entry(t, action="write", secret_path="rolled/back"))
            raise RuntimeError("the change failed")
    rows = runtime.db.query("SELECT secret_path FROM audit_log WHERE tenant_id = :t", t=t)
    assert [r["secret_path"] for r in rows] == ["db/prod/password"]
    # the rolled-back append left no hole in the chain either
    assert verify_chain(runtime.db, t).valid


def test_an_edited_row_breaks_the_chain_at_that_entry(runtime):
    t = tenant()
    entries = [entry(t) for _ in range(10)]
    for e in entries:
        record_now(runtime, e)
    victim = entries[6]
    runtime.db.execute("UPDATE audit_log SET identity_id = 'sa:someone-else' WHERE id = :id", id=victim.id)
    report = verify_chain(runtime.db, t)
    assert not report.valid
    assert report.first_break["entry_id"] == victim.id
    assert "modified" in report.first_break["problem"]


def test_a_deleted_row_is_reported_as_a_sequence_gap(runtime):
    t = tenant()
    entries = [entry(t) for _ in range(5)]
    for e in entries:
        record_now(runtime, e)
    runtime.db.execute("DELETE FROM audit_log WHERE id = :id", id=entries[2].id)
    report = verify_chain(runtime.db, t)
    assert not report.valid
    assert "gap" in report.first_break["problem"]
    runtime.db.execute("DELETE FROM audit_log WHERE id = :id", id=entries[4].id)


def test_deleting_the_newest_entry_is_detected_against_the_chain_head(runtime):
    t = tenant()
    entries = [entry(t) for _ in range(3)]
    for e in entries:
        record_now(runtime, e)
    runtime.db.execute("DELETE FROM audit_log WHERE id = :id", id=entries[-1].id)
    report = verify_chain(runtime.db, t)
    assert not report.valid and "missing" in report.first_break["problem"]


def test_concurrent_writers_use_separate_lanes_and_every_lane_verifies(base_env):
    db = Database(DatabaseURL.parse("DATABASE_URL", base_env["DATABASE_URL"]), pool_size=8)
    t = tenant()
    errors = []

    def writer():
        try:
            for _ in range(40):
                with db.session() as s:
                    record(s, entry(t))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert not errors
        lanes = db.query("SELECT DISTINCT chain_lane FROM audit_log WHERE tenant_id = :t", t=t)
        assert 1 < len(lanes) <= CHAIN_LANES
        report = verify_chain(db, t)
        assert report.valid, report.first_break
        assert report.checked == 320
    finally:
        db.close()


@pytest.fixture
def no_audit_insert_url(base_env):
    """A login role that may do everything on the test database except INSERT into audit_log."""
    url = DatabaseURL.parse("DATABASE_URL", base_env["DATABASE_URL"])
    role = "svtest_noaudit_" + secrets.token_hex(4)
    admin = pg8000.native.Connection(user=url.user, host=url.host, port=url.port, database=url.database)
    try:
        admin.run(f'CREATE ROLE "{role}" LOGIN')
        admin.run(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        admin.run(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        admin.run(f'REVOKE INSERT ON audit_log FROM "{role}"')
        yield base_env["DATABASE_URL"].replace(f"//{url.user}@", f"//{role}@")
    finally:
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r", r=role)
        admin.run(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
        admin.run(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{role}"')
        admin.run(f'DROP ROLE "{role}"')
        admin.close()


def test_a_failed_audit_insert_raises_audit_unavailable_and_aborts_the_change(no_audit_insert_url, runtime):
    db = Database(DatabaseURL.parse("DATABASE_URL", no_audit_insert_url), pool_size=1)
    t = tenant()
    try:
        with pytest.raises(ScaiVaultError) as caught:
            with db.transaction() as tx:
                tx.execute("INSERT INTO system_state (key, value) VALUES (:k, '{}'::jsonb)", k="probe-" + t)
                record(tx, entry(t, action="write"))
        assert caught.value.code == "audit_unavailable" and caught.value.status == 503
        assert runtime.db.one("SELECT 1 AS x FROM system_state WHERE key = :k", k="probe-" + t) is None
        # the connection is still usable afterwards
        assert db.scalar("SELECT 1") == 1
    finally:
        db.close()


def test_a_window_verifies_the_links_inside_it_only(runtime):
    from datetime import datetime, timedelta, timezone

    t = tenant()
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    entries = [entry(t, timestamp=base + timedelta(minutes=i)) for i in range(6)]
    with runtime.db.session() as s:   # one connection: one lane
        for e in entries:
            record(s, e)
    runtime.db.execute("UPDATE audit_log SET source_ip = '6.6.6.6' WHERE id = :id", id=entries[1].id)
    later = verify_chain(runtime.db, t, since=base + timedelta(minutes=2))
    assert later.valid and later.checked == 4
    whole = verify_chain(runtime.db, t, until=base + timedelta(minutes=3))
    assert not whole.valid and whole.first_break["entry_id"] == entries[1].id
