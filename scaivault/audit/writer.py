"""Appending audit entries: one INSERT statement that also advances the tenant's hash chain.

Each tenant has independent chains ("lanes"). A connection appends to lane
`pg_backend_pid() % CHAIN_LANES`; live backends have distinct pids, so concurrent writers on
different connections lock different head rows and practically never wait on each other (a
platform-wide or tenant-wide lock never exists); a head-row lock is held only until the
writer's transaction ends. A lane is created on a connection's first entry for a tenant.
"""
from __future__ import annotations

import logging
import time

from pg8000.exceptions import DatabaseError, InterfaceError

from ..db import Session
from ..errors import ScaiVaultError
from .entry import AuditEntry, canonical_bytes

log = logging.getLogger("scaivault.audit")

CHAIN_LANES = 32749   # a prime below the smallint limit: pids of live backends do not collide
GENESIS_HASH = bytes(32)

# hash = sha256(prev_hash || int2(lane) || int8(seq) || canonical) -- see chain.entry_hash
_APPEND_SQL = """
WITH head AS (
    INSERT INTO audit_chain_heads AS h (chain_key, lane, seq, prev_hash, hash)
    VALUES (:chain_key, (pg_backend_pid() % :lanes)::smallint, 1, :genesis,
            sha256(:genesis || int2send((pg_backend_pid() % :lanes)::smallint) || int8send(1::bigint) || :canon))
    ON CONFLICT (chain_key, lane) DO UPDATE
       SET seq = h.seq + 1,
           prev_hash = h.hash,
           hash = sha256(h.hash || int2send(h.lane) || int8send(h.seq + 1) || :canon)
    RETURNING lane, seq, prev_hash, hash
)
INSERT INTO audit_log (id, ts, tenant_id, partner_id, action, identity_type, identity_id,
                       secret_path, source_ip, user_agent, success, duration_ms, request_id,
                       extra_data, chain_lane, chain_seq, prev_hash, entry_hash)
SELECT :id, :ts, :tenant_id, :partner_id, :action, :identity_type, :identity_id,
       :secret_path, :source_ip, :user_agent, :success, :duration_ms, :request_id,
       :extra_data, head.lane, head.seq, head.prev_hash, head.hash
FROM head
"""


def record(session: Session, entry: AuditEntry) -> None:
    """Insert `entry` on the caller's session, inside its open transaction if it has one.

    Raises ScaiVaultError("audit_unavailable") (503) when the insert fails; the caller's
    transaction is then aborted, so the audited change cannot commit without its entry.
    """
    values = entry.stored_values()
    started = time.perf_counter()
    try:
        session.prepared(_APPEND_SQL).run(
            chain_key=values["tenant_id"] or "", lanes=CHAIN_LANES, genesis=GENESIS_HASH,
            canon=canonical_bytes(values), **values)
    except (DatabaseError, InterfaceError, OSError) as exc:
        log.warning("audit insert failed", extra={"action": values["action"],
                                                  "request_id": values["request_id"],
                                                  "error": type(exc).__name__,
                                                  "sqlstate": _sqlstate(exc)})
        _count_failure()
        raise ScaiVaultError("audit_unavailable", "the audit log cannot be written; the request was not performed") from None
    _count_write(values["action"], values["success"], time.perf_counter() - started)


# A read and its audit entry in one statement (design.md section 3: one round trip per read).
# `subject` is the caller's SELECT of at most one row with two extra columns: `audit_ok` (the
# entry is appended only when true) and `audit_version` (becomes extra_data.version). The
# entry's canonical bytes are passed as the halves around that version number, so the chain
# covers exactly the bytes a verifier recomputes from the stored row.
_READ_APPEND_SQL = """
WITH subject AS ({subject}),
canon AS (
    SELECT :canon_head || convert_to(audit_version::text, 'UTF8') || :canon_tail AS bytes, audit_version
      FROM subject WHERE audit_ok
),
head AS (
    INSERT INTO audit_chain_heads AS h (chain_key, lane, seq, prev_hash, hash)
    SELECT :chain_key, (pg_backend_pid() % :lanes)::smallint, 1, :genesis,
           sha256(:genesis || int2send((pg_backend_pid() % :lanes)::smallint) || int8send(1::bigint) || canon.bytes)
      FROM canon
    ON CONFLICT (chain_key, lane) DO UPDATE
       SET seq = h.seq + 1,
           prev_hash = h.hash,
           hash = sha256(h.hash || int2send(h.lane) || int8send(h.seq + 1) || (SELECT bytes FROM canon))
    RETURNING lane, seq, prev_hash, hash
),
appended AS (
    INSERT INTO audit_log (id, ts, tenant_id, partner_id, action, identity_type, identity_id,
                           secret_path, source_ip, user_agent, success, duration_ms, request_id,
                           extra_data, chain_lane, chain_seq, prev_hash, entry_hash)
    SELECT :id, :ts, :tenant_id, :partner_id, :action, :identity_type, :identity_id,
           :secret_path, :source_ip, :user_agent, :success, :duration_ms, :request_id,
           CAST(:extra_data AS jsonb) || jsonb_build_object('version', canon.audit_version),
           head.lane, head.seq, head.prev_hash, head.hash
      FROM head, canon
    RETURNING 1
)
SELECT subject.*, EXISTS (SELECT 1 FROM appended) AS audited FROM subject
"""

_VERSION_MARK = -7_301_955_442_917   # stands in for extra_data.version in the canonical bytes


def read_and_record(session: Session, entry: AuditEntry, subject: str, **params) -> dict | None:
    """Run `subject` and append `entry` (with extra_data.version) in one autocommitted statement.

    Returns the subject's row plus `audited` (whether the entry was appended), or None when the
    subject found no row. The entry is committed when this returns, before the caller can send
    anything; a failed append fails the whole statement with audit_unavailable (503).
    """
    values = entry.stored_values()
    marked = canonical_bytes({**values, "extra_data": {**values["extra_data"], "version": _VERSION_MARK}})
    # the key with its unescaped quotes can only be the real key: quotes inside strings are escaped
    head, key, tail = marked.partition(b'"version":' + str(_VERSION_MARK).encode())
    head += b'"version":'
    assert key and key not in tail
    values["extra_data"].pop("version", None)
    started = time.perf_counter()
    try:
        statement = session.prepared(_READ_APPEND_SQL.format(subject=subject))
        rows = statement.run(chain_key=values["tenant_id"] or "", lanes=CHAIN_LANES, genesis=GENESIS_HASH,
                             canon_head=head, canon_tail=tail, **values, **params)
    except (DatabaseError, InterfaceError, OSError) as exc:
        log.warning("audit insert failed", extra={"action": values["action"],
                                                  "request_id": values["request_id"],
                                                  "error": type(exc).__name__,
                                                  "sqlstate": _sqlstate(exc)})
        _count_failure()
        raise ScaiVaultError("audit_unavailable", "the audit log cannot be written; the request was not performed") from None
    if not rows:
        return None
    row = dict(zip([c["name"] for c in statement.columns], rows[0]))
    if row["audited"]:
        _count_write(values["action"], values["success"], time.perf_counter() - started)
    return row


def record_now(runtime, entry: AuditEntry) -> None:
    """Record `entry` on its own connection (autocommitted), e.g. for a denial."""
    try:
        with runtime.db.session() as session:
            record(session, entry)
    except ScaiVaultError as exc:
        if exc.code != "audit_unavailable":
            _count_failure()
            raise ScaiVaultError("audit_unavailable", "the audit log cannot be written") from None
        raise


def _sqlstate(exc: Exception) -> str | None:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], dict):
        return args[0].get("C")
    return None


def _count_write(action: str, success: bool, seconds: float) -> None:
    from .. import metrics

    metrics.DB_LATENCY.observe(seconds)
    metrics.AUDIT_ENTRIES.labels(action=action, success="true" if success else "false").inc()


def _count_failure() -> None:
    from .. import metrics

    metrics.AUDIT_WRITE_FAILURES.inc()
