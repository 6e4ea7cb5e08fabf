"""Monthly partitions of audit_log: create ahead of time, drop past AUDIT_RETENTION.

Expiry drops whole partitions (no row-by-row DELETE), so retention is honoured to the month:
an entry is dropped once the month it belongs to ended more than AUDIT_RETENTION ago. Before
a partition goes, the last (seq, hash) of every chain lane in it becomes that lane's anchor,
so the remaining entries still verify.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

from pg8000.exceptions import DatabaseError

from ..db import Database

log = logging.getLogger("scaivault.audit.partitions")

MONTHS_AHEAD = 3
LOCK_KEY = 0x5CA1_A0D1          # one maintainer at a time across instances
LOCK_TIMEOUT_MS = 1000
LOCK_NOT_AVAILABLE = "55P03"
PARTITION_RE = re.compile(r"^audit_log_(\d{4})(\d{2})$")


def month_start(ts: datetime) -> datetime:
    ts = ts.astimezone(timezone.utc)
    return datetime(ts.year, ts.month, 1, tzinfo=timezone.utc)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + (month.month - 1) + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def partition_name(month: datetime) -> str:
    return f"audit_log_{month.year:04d}{month.month:02d}"


def existing_partitions(session) -> dict[str, datetime]:
    """{partition name: month start} of the monthly partitions attached to audit_log."""
    rows = session.query("SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'audit_log'::regclass")
    found = {}
    for row in rows:
        m = PARTITION_RE.match(row["name"])
        if m:
            found[row["name"]] = datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=timezone.utc)
    return found


def maintain(db: Database, retention_seconds: int, *, now: datetime | None = None,
             months_ahead: int = MONTHS_AHEAD) -> dict[str, list[str]]:
    """Create missing partitions from last month to `months_ahead` ahead; drop expired ones."""
    now = now or datetime.now(timezone.utc)
    try:
        return _maintain(db, retention_seconds, now, months_ahead)
    except DatabaseError as exc:
        if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
            raise
        log.warning("audit partition maintenance deferred: a lock was not free within the timeout")
        return {"created": [], "dropped": [], "deferred": ["lock_timeout"]}


def _sqlstate(exc: Exception) -> str | None:
    args = getattr(exc, "args", ())
    return args[0].get("C") if args and isinstance(args[0], dict) else None


def _maintain(db: Database, retention_seconds: int, now: datetime, months_ahead: int) -> dict[str, list[str]]:
    created: list[str] = []
    dropped: list[str] = []
    with db.transaction() as tx:
        if not tx.scalar("SELECT pg_try_advisory_xact_lock(:k)", k=LOCK_KEY):
            return {"created": created, "dropped": dropped}
        # never queue behind a long transaction while holding up audit writers; retry next tick
        tx.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
        existing = existing_partitions(tx)
        current = month_start(now)
        for offset in range(-1, months_ahead + 1):
            month = add_months(current, offset)
            name = partition_name(month)
            if name not in existing:
                _create(tx, month)
                created.append(name)
        cutoff = now - timedelta(seconds=retention_seconds)
        for name, month in sorted(existing.items(), key=lambda item: item[1]):
            if add_months(month, 1) <= cutoff:
                _anchor_and_drop(tx, name)
                dropped.append(name)
        # stray rows of expired months that sat in the default partition
        expired_month_end = month_start(cutoff)
        _anchor(tx, "audit_log_default", "ts < :cutoff", cutoff=expired_month_end)
        tx.execute("DELETE FROM audit_log_default WHERE ts < :cutoff", cutoff=expired_month_end)
    for name in created:
        log.info("audit partition created", extra={"partition": name})
    for name in dropped:
        log.info("audit partition dropped (retention)", extra={"partition": name})
    return {"created": created, "dropped": dropped}


def _create(tx, month: datetime) -> None:
    """Create the month's partition, moving rows the default partition already holds for it.

    CREATE TABLE ... PARTITION OF would lock audit_log exclusively (stalling every writer);
    creating a plain table and ATTACHing it needs only SHARE UPDATE EXCLUSIVE on the parent.
    """
    name = partition_name(month)
    lower, upper = month, add_months(month, 1)
    bounds = f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
    tx.execute(f'CREATE TABLE "{name}" (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
    # a matching CHECK lets ATTACH skip its validation scan
    tx.execute(f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_range" '
               f"CHECK (ts >= '{lower.isoformat()}' AND ts < '{upper.isoformat()}')")
    tx.execute(f'WITH moved AS (DELETE FROM audit_log_default WHERE ts >= :a AND ts < :b RETURNING *) '
               f'INSERT INTO "{name}" SELECT * FROM moved', a=lower, b=upper)
    tx.execute(f'ALTER TABLE audit_log ATTACH PARTITION "{name}" {bounds}')
    tx.execute(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_range"')   # the bound now says the same


def _anchor(tx, table: str, where: str = "true", **params) -> None:
    tx.execute(
        f"INSERT INTO audit_chain_anchors AS a (chain_key, lane, seq, hash) "
        f"SELECT DISTINCT ON (coalesce(tenant_id, ''), chain_lane) coalesce(tenant_id, ''), chain_lane, chain_seq, "
        f"entry_hash FROM \"{table}\" WHERE {where} "
        f"ORDER BY coalesce(tenant_id, ''), chain_lane, chain_seq DESC "
        f"ON CONFLICT (chain_key, lane) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, anchored_at = now() "
        f"WHERE excluded.seq > a.seq", **params)


def _anchor_and_drop(tx, name: str) -> None:
    _anchor(tx, name)
    tx.execute(f'DROP TABLE "{name}"')
