"""Verifying the per-tenant hash chains of the audit log (tamper evidence)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..db import Database
from .entry import canonical_bytes, format_timestamp
from .writer import GENESIS_HASH

BATCH = 2000


def entry_hash(prev_hash: bytes, lane: int, seq: int, canonical: bytes) -> bytes:
    """sha256(prev_hash || int2(lane) || int8(seq) || canonical): the writer's SQL, in Python."""
    return hashlib.sha256(prev_hash + lane.to_bytes(2, "big", signed=True)
                          + seq.to_bytes(8, "big", signed=True) + canonical).digest()


@dataclass
class ChainReport:
    """The outcome of one verification run."""

    tenant_id: str | None
    checked: int = 0
    lanes: int = 0
    valid: bool = True
    first_break: dict[str, Any] | None = None
    breaks: int = 0
    lane_heads: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "valid": self.valid, "entries_checked": self.checked,
                "lanes_checked": self.lanes, "first_break": self.first_break}


_ROWS_SQL = """
SELECT id, ts, tenant_id, partner_id, action, identity_type, identity_id, secret_path, source_ip,
       user_agent, success, duration_ms, request_id, extra_data, chain_lane, chain_seq,
       prev_hash, entry_hash
FROM audit_log
WHERE {tenant_clause} AND chain_lane = :lane AND chain_seq > :after
ORDER BY chain_seq
LIMIT :batch
"""


def verify_chain(db: Database, tenant_id: str | None, *, since: datetime | None = None,
                 until: datetime | None = None) -> ChainReport:
    """Walk every lane of one tenant's chain (optionally a time window) and report the first break.

    A break is an entry whose stored hash differs from the hash recomputed over its fields, an
    entry whose prev_hash is not its predecessor's hash, or a gap in a lane's sequence
    (a deleted row). Rows before `since` are trusted as the starting point of each lane.
    """
    report = ChainReport(tenant_id=tenant_id)
    chain_key = tenant_id or ""
    heads = db.read_query("SELECT lane, seq FROM audit_chain_heads WHERE chain_key = :k ORDER BY lane", k=chain_key)
    report.lanes = len(heads)
    for head in heads:
        lane = int(head["lane"])
        report.lane_heads[lane] = int(head["seq"])
        prev: bytes | None = None
        expected_seq: int | None = None
        after = 0
        if since is not None:
            start = db.read_query(
                "SELECT chain_seq, entry_hash FROM audit_log WHERE " + _tenant_clause(tenant_id) + " "
                "AND chain_lane = :lane AND ts < :since ORDER BY chain_seq DESC LIMIT 1",
                tenant=tenant_id, lane=lane, since=since)
            if start:
                after = int(start[0]["chain_seq"])
                prev = bytes(start[0]["entry_hash"])
                expected_seq = after + 1
        if prev is None:
            anchor = db.read_query("SELECT seq, hash FROM audit_chain_anchors WHERE chain_key = :k AND lane = :lane",
                                   k=chain_key, lane=lane)
            if anchor:  # older entries were dropped by retention
                after, prev = int(anchor[0]["seq"]), bytes(anchor[0]["hash"])
                expected_seq = after + 1
            else:
                prev, expected_seq = GENESIS_HASH, 1
        reached_end = True
        for row in _lane_rows(db, tenant_id, lane, after):
            if until is not None and row["ts"] > until:
                reached_end = False
                break
            report.checked += 1
            problem = _check_row(row, prev, expected_seq)
            if problem:
                _note_break(report, lane, problem, row)
                reached_end = False
                break  # the rest of this lane cannot be trusted; go on with the next lane
            prev = bytes(row["entry_hash"])
            expected_seq = int(row["chain_seq"]) + 1
        if reached_end and expected_seq - 1 < report.lane_heads[lane]:
            _note_break(report, lane, "entries missing at the end of the lane (deleted)", None,
                        sequence=expected_seq)
    return report


def _tenant_clause(tenant_id: str | None) -> str:
    # "=" rather than IS NOT DISTINCT FROM, so that the (tenant_id, chain_lane, chain_seq) index applies
    return "tenant_id = :tenant" if tenant_id is not None else "(tenant_id IS NULL AND CAST(:tenant AS text) IS NULL)"


def _lane_rows(db: Database, tenant_id: str | None, lane: int, after: int):
    """A lane's entries after sequence `after`, in order, fetched in batches."""
    while True:
        rows = db.read_query(_ROWS_SQL.format(tenant_clause=_tenant_clause(tenant_id)),
                             tenant=tenant_id, lane=lane, after=after, batch=BATCH)
        yield from rows
        if len(rows) < BATCH:
            return
        after = int(rows[-1]["chain_seq"])


def _note_break(report: ChainReport, lane: int, problem: str, row: dict | None, sequence: int | None = None) -> None:
    """Record a break; the reported first break is the earliest one across lanes."""
    report.breaks += 1
    found = {"entry_id": row["id"] if row else None,
             "timestamp": format_timestamp(row["ts"]) if row else None,
             "lane": lane, "sequence": int(row["chain_seq"]) if row else sequence, "problem": problem}
    current = report.first_break
    if (current is None or (found["timestamp"] is not None
                            and (current["timestamp"] is None or found["timestamp"] < current["timestamp"]))):
        report.first_break = found
    report.valid = False


def _check_row(row: dict, prev: bytes, expected_seq: int) -> str | None:
    seq = int(row["chain_seq"])
    if seq != expected_seq:
        return f"sequence gap: expected {expected_seq}, found {seq} (entries deleted)"
    if bytes(row["prev_hash"]) != prev:
        return "prev_hash does not match the preceding entry"
    values = {k: row[k] for k in ("id", "ts", "tenant_id", "partner_id", "action", "identity_type",
                                  "identity_id", "secret_path", "source_ip", "user_agent", "success",
                                  "duration_ms", "request_id", "extra_data")}
    recomputed = entry_hash(prev, int(row["chain_lane"]), seq, canonical_bytes(values))
    if recomputed != bytes(row["entry_hash"]):
        return "entry content does not match its hash (modified)"
    return None
