"""Retention by monthly partitions: created ahead, rows moved out of the default, expired dropped."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

import pytest

from scaivault.audit import AuditEntry, record_now
from scaivault.audit.chain import verify_chain
from scaivault.audit.partitions import add_months, existing_partitions, maintain, month_start, partition_name
from scaivault.config import load_settings
from scaivault.jobs import audit_partitions
from scaivault.runtime import Runtime

SEVEN_YEARS = 2555 * 86400


@pytest.fixture
def runtime(base_env):
    rt = Runtime(load_settings(base_env))
    yield rt
    rt.close()


def partitions(rt):
    with rt.db.session() as s:
        return existing_partitions(s)


def test_the_job_keeps_three_months_of_partitions_ahead(runtime):
    audit_partitions.run_maintenance(runtime)
    names = partitions(runtime)
    current = month_start(datetime.now(timezone.utc))
    for offset in range(-1, 4):
        assert partition_name(add_months(current, offset)) in names
    # a second run has nothing to do
    assert audit_partitions.run_maintenance(runtime) == {"created": [], "dropped": []}


def test_entries_written_before_their_partition_exists_are_moved_into_it(runtime):
    tenant = "t_" + secrets.token_hex(4)
    far = add_months(month_start(datetime.now(timezone.utc)), 9) + timedelta(days=3)
    entry = AuditEntry(action="read", tenant_id=tenant, secret_path="a/b", timestamp=far)
    record_now(runtime, entry)
    assert runtime.db.scalar("SELECT count(*) FROM audit_log_default WHERE id = :id", id=entry.id) == 1
    result = maintain(runtime.db, SEVEN_YEARS, now=far)
    assert partition_name(month_start(far)) in result["created"]
    assert runtime.db.scalar("SELECT count(*) FROM audit_log_default WHERE id = :id", id=entry.id) == 0
    table = partition_name(month_start(far))
    assert runtime.db.scalar(f'SELECT count(*) FROM "{table}" WHERE id = :id', id=entry.id) == 1
    assert verify_chain(runtime.db, tenant).valid


def test_expired_months_are_dropped_and_the_rest_of_the_chain_still_verifies(runtime):
    tenant = "t_" + secrets.token_hex(4)
    old = datetime(2018, 3, 15, tzinfo=timezone.utc)
    maintain(runtime.db, SEVEN_YEARS, now=old, months_ahead=1)
    assert partition_name(month_start(old)) in partitions(runtime)
    old_entries = [AuditEntry(action="read", tenant_id=tenant, timestamp=old + timedelta(minutes=i)) for i in range(5)]
    with runtime.db.session() as s:   # one connection, so one lane spanning old and new entries
        from scaivault.audit import record

        for e in old_entries:
            record(s, e)
        new_entries = [AuditEntry(action="write", tenant_id=tenant) for _ in range(3)]
        for e in new_entries:
            record(s, e)
    result = maintain(runtime.db, SEVEN_YEARS)
    assert partition_name(month_start(old)) in result["dropped"]
    assert partition_name(month_start(old)) not in partitions(runtime)
    remaining = runtime.db.query("SELECT id FROM audit_log WHERE tenant_id = :t", t=tenant)
    assert {r["id"] for r in remaining} == {e.id for e in new_entries}
    report = verify_chain(runtime.db, tenant)
    assert report.valid, report.first_break
    assert report.checked == 3


def test_creating_partitions_does_not_wait_for_open_audit_transactions(runtime, base_env):
    from scaivault.audit import record
    from scaivault.config import DatabaseURL
    from scaivault.db import Database

    other = Database(DatabaseURL.parse("DATABASE_URL", base_env["DATABASE_URL"]), pool_size=2)
    try:
        with other.transaction() as open_tx:   # a writer in the middle of its transaction
            record(open_tx, AuditEntry(action="write", tenant_id="t_" + secrets.token_hex(4)))
            future = add_months(month_start(datetime.now(timezone.utc)), 20)
            result = maintain(runtime.db, SEVEN_YEARS, now=future, months_ahead=0)
            assert partition_name(future) in result["created"]
            # and writers keep writing meanwhile
            record_now(runtime, AuditEntry(action="read", tenant_id="t_" + secrets.token_hex(4)))
    finally:
        other.close()


def test_a_drop_that_cannot_get_its_lock_is_deferred_not_failed(runtime, base_env):
    from scaivault.config import DatabaseURL
    from scaivault.db import Database

    old = datetime(2017, 6, 10, tzinfo=timezone.utc)
    maintain(runtime.db, SEVEN_YEARS, now=old, months_ahead=0)
    record_now(runtime, AuditEntry(action="read", tenant_id="t_" + secrets.token_hex(4), timestamp=old))
    other = Database(DatabaseURL.parse("DATABASE_URL", base_env["DATABASE_URL"]), pool_size=1)
    try:
        with other.transaction() as reader:   # a long reader of the old month
            reader.query(f'SELECT count(*) FROM "{partition_name(month_start(old))}"')
            result = maintain(runtime.db, SEVEN_YEARS)
            assert result["deferred"] == ["lock_timeout"]
        assert partition_name(month_start(old)) in maintain(runtime.db, SEVEN_YEARS)["dropped"]
    finally:
        other.close()
