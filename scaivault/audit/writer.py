"""Appending audit entries: one INSERT statement that also advances the tenant's hash chain.

Each tenant has independent chains ("lanes"). A connection appends to lane
`pg_backend_pid() % CHAIN_LANES`; live backends have distinct pids, so concurrent writers on
different connections lock different head rows and practically never wait on each other (a
platform-wide or tenant-wide lock never exists); a head-row lock is held only until the
writer's transaction ends. A lane is created on a connection's first entry for a tenant.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

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
        raise audit_unavailable(values, exc) from None
    count_appended(values["action"], values["success"], time.perf_counter() - started)


_FILL_MARK = -7_301_955_442_917   # stands in for the value SQL fills in, in the canonical bytes


def canonical_halves(values: dict, key: str) -> tuple[bytes, bytes]:
    """The entry's canonical bytes split around extra_data[key], whose value SQL fills in.

    The chain then covers exactly the bytes a verifier recomputes from the stored row once the
    statement has put the number there (the version read, the versions pruned).
    """
    marked = canonical_bytes({**values, "extra_data": {**values["extra_data"], key: _FILL_MARK}})
    # the key with its unescaped quotes can only be the real key: quotes inside strings are escaped
    head, mark, tail = marked.partition(f'"{key}":{_FILL_MARK}'.encode())
    assert mark and mark not in tail
    return head + f'"{key}":'.encode(), tail


def entry_document(entry: AuditEntry, filled_key: str) -> dict[str, Any]:
    """`entry` as the JSON object the SQL functions of migration 0060 append (sv_audit_append):
    stored values, extra_data without `filled_key`, and the canonical halves around it."""
    values = entry.stored_values()
    head, tail = canonical_halves(values, filled_key)
    extra = dict(values["extra_data"])
    extra.pop(filled_key, None)
    doc = {k: values[k] for k in ("id", "tenant_id", "partner_id", "action", "identity_type", "identity_id",
                                  "secret_path", "source_ip", "user_agent", "success", "duration_ms", "request_id")}
    doc.update(ts=values["ts"].isoformat(), extra_data=extra,
               canon_head=head.decode("ascii"), canon_tail=tail.decode("ascii"))
    return doc


_READ_BATCH_SQL = "SELECT * FROM sv_read_batch(CAST(:items AS jsonb))"


def read_batch_and_record(session: Session, items: list[dict[str, Any]]) -> list[dict | None]:
    """Audited reads of several requests in one autocommitted statement (group commit).

    `items`: {"tenant", "partner", "path", "version", "entry": AuditEntry, "events"?}. For each,
    in order, the secret row plus `audited`, or None when no secret is at the path; each readable
    row's success entry (extra_data.version = the version read) is committed on return. A failed
    append fails the whole statement with audit_unavailable (503): nothing of it is committed.
    """
    docs = []
    for item in items:
        doc = {"tenant": item["tenant"], "partner": item["partner"], "path": item["path"],
               "version": item["version"], "audit": entry_document(item["entry"], "version")}
        if item.get("events"):
            doc["events"] = item["events"]
        docs.append(doc)
    started = time.perf_counter()
    try:
        rows = session.run_prepared(_READ_BATCH_SQL, items=json.dumps(docs, separators=(",", ":")))
    except (DatabaseError, InterfaceError, OSError) as exc:
        if isinstance(exc, DatabaseError) and not is_audit_failure(exc):
            raise
        raise audit_unavailable(items[0]["entry"].stored_values(), exc) from None
    out: list[dict | None] = [None] * len(items)
    elapsed, appended = time.perf_counter() - started, 0
    for row in rows:
        out[row.pop("item") - 1] = row
        appended += bool(row["audited"])
    count_appended("read", True, elapsed, appended)
    return out


def is_audit_failure(exc: Exception) -> bool:
    """Whether a failed statement failed in the audit append (or lost its connection)."""
    if not isinstance(exc, DatabaseError):
        return True
    args = getattr(exc, "args", ())
    info = args[0] if args and isinstance(args[0], dict) else {}
    return "sv_audit_append" in str(info.get("W", "")) or "audit_" in str(info.get("M", ""))


def audit_unavailable(values: dict, exc: Exception) -> ScaiVaultError:
    """Log and count a failed append; the 503 error to raise (it names no values)."""
    log.warning("audit insert failed", extra={"action": values["action"],
                                              "request_id": values["request_id"],
                                              "error": type(exc).__name__,
                                              "sqlstate": _sqlstate(exc)})
    _count_failure()
    return ScaiVaultError("audit_unavailable", "the audit log cannot be written; the request was not performed")


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


_ENTRY_COUNTERS: dict[tuple[str, bool], object] = {}


def count_appended(action: str, success: bool, seconds: float | None, entries: int = 1) -> None:
    """One statement's latency (None: already observed) and the entries it appended."""
    from .. import metrics

    if seconds is not None:
        metrics.DB_LATENCY.observe(seconds)
    counter = _ENTRY_COUNTERS.get((action, success))
    if counter is None:        # labels() costs more than the increment: look each child up once
        counter = _ENTRY_COUNTERS[(action, success)] = metrics.AUDIT_ENTRIES.labels(
            action=action, success="true" if success else "false")
    counter.inc(entries)


def _count_failure() -> None:
    from .. import metrics

    metrics.AUDIT_WRITE_FAILURES.inc()
