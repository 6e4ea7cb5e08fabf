"""The event outbox: `emit` inserts one event row on the caller's open transaction.

An event therefore exists if and only if the change that caused it committed. The same
statement NOTIFYs the dispatchers (PostgreSQL delivers a NOTIFY only on commit), so fan-out
starts within milliseconds without polling; the periodic sweep catches anything missed.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Protocol

from .. import pagination

CHANNEL = "scaivault_events"

EVENT_TYPES: tuple[str, ...] = (
    "secret.created", "secret.updated", "secret.deleted", "secret.rotated", "secret.expiring", "secret.expired",
    "secret.accessed",
    "policy.created", "policy.updated", "policy.deleted", "policy.binding.created", "policy.binding.deleted",
    "policy.violation",
    "rotation.due", "rotation.overdue", "rotation.completed", "rotation.failed",
    "certificate.issued", "certificate.renewed", "certificate.revoked", "certificate.expiring",
    "lease.created", "lease.renewed", "lease.revoked",
    "webhook.disabled", "webhook.test",
)

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS = range(120, -1, -10)

_INSERT_SQL = """
WITH ins AS (
    INSERT INTO events (id, tenant_id, partner_id, event_type, path, body)
    VALUES (:id, :tenant_id, :partner_id, :event_type, :path, :body)
    RETURNING seq
)
SELECT seq, pg_notify('""" + CHANNEL + """', '') AS notified FROM ins
"""


class Origin(Protocol):
    """Who and what caused an event (an AuditEntry fits)."""

    tenant_id: str | None
    partner_id: str | None
    identity_id: str | None
    request_id: str | None


def new_event_id() -> str:
    """`evt_` + a ULID (48-bit milliseconds + 80 random bits, Crockford base32): sortable by time."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    # 26 characters of 5 bits = 13 pairs of 10 bits, most significant first
    return "evt_" + "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def timestamp(ts: datetime | None = None) -> str:
    return pagination.timestamp(ts or datetime.now(timezone.utc))


def envelope(event_type: str, origin: Origin, data: dict, path: str | None, event_id: str | None = None) -> dict:
    """The spec/30 4.1 envelope; `path` is omitted for resources that have none."""
    doc: dict[str, Any] = {"event_id": event_id or new_event_id(), "event_type": event_type,
                           "timestamp": timestamp(), "tenant_id": origin.tenant_id,
                           "partner_id": origin.partner_id, "identity_id": origin.identity_id}
    if path is not None:
        doc["path"] = path
    doc["data"] = data
    doc["request_id"] = origin.request_id
    return doc


def emit(session, event_type: str, origin: Origin, data: dict, path: str | None = None) -> str:
    """Insert one event inside the caller's transaction; returns its event_id."""
    doc = envelope(event_type, origin, data, path)
    session.prepared(_INSERT_SQL).run(id=doc["event_id"], tenant_id=origin.tenant_id, partner_id=origin.partner_id,
                                      event_type=event_type, path=path,
                                      body=json.dumps(doc, separators=(",", ":"), default=str))
    return doc["event_id"]


def event_type_matches(patterns: list[str], event_type: str) -> bool:
    """Exact types, `prefix.*` (any type below the prefix) or `*`."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def valid_event_pattern(pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    if pattern == "*" or pattern in EVENT_TYPES:
        return True
    return pattern.endswith(".*") and any(t.startswith(pattern[:-1]) for t in EVENT_TYPES)


class SystemOrigin:
    """An event caused by ScaiVault itself (scheduler, delivery worker)."""

    def __init__(self, tenant_id: str | None, partner_id: str | None, component: str, request_id: str | None = None):
        self.tenant_id = tenant_id
        self.partner_id = partner_id
        self.identity_id = f"system:{component}"
        self.request_id = request_id or f"req_{component}_{os.getpid()}_{secrets.token_hex(6)}"
