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
WHERE {tenant_clause} AND (chain_lane, chain_seq) > (:after_lane, :after_seq) {window}
ORDER BY chain_lane, chain_seq
LIMIT :batch
"""


@dataclass
class _Lane:
    prev: bytes | None       # None: trust the first entry seen (a window's start)
    expected_seq: int | None
    broken: bool = False


def verify_chain(db: Database, tenant_id: str | None, *, since: datetime | None = None,
                 until: datetime | None = None) -> ChainReport:
    """Walk every lane of one tenant's chain (optionally a from/to window) and report the first break.

    A break is an entry whose stored hash differs from the hash recomputed over its fields, an
    entry whose prev_hash is not its predecessor's hash, a gap in a lane's sequence (a deleted
    row) or a lane that ends before its recorded head (deleted newest rows). Without a window a
    lane starts at genesis (or at the anchor left by retention); with one, the first entry of
    each lane inside the window is the trusted starting point.
    """
    report = ChainReport(tenant_id=tenant_id)
    chain_key = tenant_id or ""
    windowed = since is not None or until is not None
    heads = {int(r["lane"]): int(r["seq"]) for r in db.read_query(
        "SELECT lane, seq FROM audit_chain_heads WHERE chain_key = :k", k=chain_key)}
    anchors = {int(r["lane"]): (int(r["seq"]), bytes(r["hash"])) for r in db.read_query(
        "SELECT lane, seq, hash FROM audit_chain_anchors WHERE chain_key = :k", k=chain_key)}
    report.lane_heads = heads
    lanes: dict[int, _Lane] = {}

    def start(lane: int) -> _Lane:
        if windowed:
            return _Lane(None, None)
        if lane in anchors:
            seq, digest = anchors[lane]
            return _Lane(digest, seq + 1)
        return _Lane(GENESIS_HASH, 1)

    for row in _rows(db, tenant_id, since, until):
        lane_no = int(row["chain_lane"])
        lane = lanes.get(lane_no)
        if lane is None:
            lane = lanes[lane_no] = start(lane_no)
        if lane.broken:
            continue  # the rest of a broken lane cannot be trusted
        report.checked += 1
        problem = _check_row(row, lane.prev, lane.expected_seq)
        if problem:
            _note_break(report, lane_no, problem, row)
            lane.broken = True
            continue
        lane.prev = bytes(row["entry_hash"])
        lane.expected_seq = int(row["chain_seq"]) + 1
    if not windowed:
        for lane_no, head_seq in heads.items():
            lane = lanes.get(lane_no) or start(lane_no)
            if not lane.broken and lane.expected_seq - 1 < head_seq:
                _note_break(report, lane_no, "entries missing at the end of the lane (deleted)", None,
                            sequence=lane.expected_seq)
    report.lanes = len(set(lanes) | set(heads))
    return report


def _tenant_clause(tenant_id: str | None) -> str:
    # "=" rather than IS NOT DISTINCT FROM, so that the (tenant_id, chain_lane, chain_seq) index applies
    return "tenant_id = :tenant" if tenant_id is not None else "(tenant_id IS NULL AND CAST(:tenant AS text) IS NULL)"


def _rows(db: Database, tenant_id: str | None, since: datetime | None, until: datetime | None):
    """The tenant's entries ordered by (lane, seq), fetched in keyset batches."""
    window = ""
    params: dict = {}
    if since is not None:
        window += " AND ts >= :since"
        params["since"] = since
    if until is not None:
        window += " AND ts <= :until"
        params["until"] = until
    sql = _ROWS_SQL.format(tenant_clause=_tenant_clause(tenant_id), window=window)
    after_lane, after_seq = -1, 0
    while True:
        rows = db.read_query(sql, tenant=tenant_id, after_lane=after_lane, after_seq=after_seq, batch=BATCH, **params)
        yield from rows
        if len(rows) < BATCH:
            return
        after_lane, after_seq = int(rows[-1]["chain_lane"]), int(rows[-1]["chain_seq"])


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


def _check_row(row: dict, prev: bytes | None, expected_seq: int | None) -> str | None:
    seq = int(row["chain_seq"])
    if expected_seq is not None and seq != expected_seq:
        return f"sequence gap: expected {expected_seq}, found {seq} (entries deleted)"
    if prev is None:  # the trusted first entry of a window
        prev = bytes(row["prev_hash"])
    if bytes(row["prev_hash"]) != prev:
        return "prev_hash does not match the preceding entry"
    values = {k: row[k] for k in ("id", "ts", "tenant_id", "partner_id", "action", "identity_type",
                                  "identity_id", "secret_path", "source_ip", "user_agent", "success",
                                  "duration_ms", "request_id", "extra_data")}
    recomputed = entry_hash(prev, int(row["chain_lane"]), seq, canonical_bytes(values))
    if recomputed != bytes(row["entry_hash"]):
        return "entry content does not match its hash (modified)"
    return None
