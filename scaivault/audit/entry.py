"""The audit entry (spec/30 section 7.1 plus tenant and partner) and its canonical form.

The canonical serialisation is what the hash chain covers: every field except the chain
columns, as compact JSON with sorted keys. It is computed from the values as they will be
stored, so verification can recompute it from a row read back later.
"""
from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..pagination import timestamp

ACTIONS: frozenset[str] = frozenset({
    "read", "write", "delete", "list", "rotate",
    "policy_create", "policy_update", "policy_delete", "policy_bind", "policy_unbind",
    "pki_issue", "pki_sign", "pki_revoke", "pki_ca_create",
    "dynamic_generate", "dynamic_renew", "dynamic_revoke",
    "dynamic_config", "token_exchange", "trust_rule_change",
    "webhook_delivery", "subscription_event", "federation_sync", "identity_sync", "export_created",
    "pki_admin", "pki_read", "acme_order",
})

IDENTITY_TYPES: frozenset[str] = frozenset({"user", "service_account", "group", "anonymous", "system"})

# Bounds on free-text fields so a hostile client cannot bloat the log.
_TEXT_LIMITS = {"user_agent": 512, "secret_path": 1024, "identity_id": 320, "source_ip": 64,
                "request_id": 128, "tenant_id": 64, "partner_id": 64, "identity_type": 32, "action": 64}


def new_entry_id() -> str:
    return "log_" + secrets.token_hex(12)


def format_timestamp(ts: datetime) -> str:
    """ISO 8601 with microseconds and `Z` (spec/30 section 7.1)."""
    return timestamp(ts)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class AuditEntry:
    """One audited event; holds metadata only, never a secret value or token."""

    action: str
    tenant_id: str | None = None
    partner_id: str | None = None
    identity_type: str | None = None
    identity_id: str | None = None
    secret_path: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    success: bool = True
    duration_ms: int | None = None
    request_id: str | None = None
    extra_data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_entry_id)
    timestamp: datetime = field(default_factory=_now)

    def stored_values(self) -> dict[str, Any]:
        """The column values as written (bounded text, JSON-safe extras, UTC microseconds)."""
        values: dict[str, Any] = {}
        for name in ("tenant_id", "partner_id", "action", "identity_type", "identity_id",
                     "secret_path", "source_ip", "user_agent", "request_id"):
            values[name] = _bounded_text(getattr(self, name), _TEXT_LIMITS[name])
        values["id"] = self.id
        values["ts"] = self.timestamp.astimezone(timezone.utc)
        values["success"] = bool(self.success)
        values["duration_ms"] = None if self.duration_ms is None else int(self.duration_ms)
        values["extra_data"] = _json_safe(self.extra_data or {})
        return values


def canonical_bytes(values: dict[str, Any]) -> bytes:
    """The bytes the hash chain covers, from stored column values (see stored_values)."""
    doc = {
        "id": values["id"],
        "timestamp": format_timestamp(values["ts"]),
        "tenant_id": values["tenant_id"],
        "partner_id": values["partner_id"],
        "action": values["action"],
        "identity_type": values["identity_type"],
        "identity_id": values["identity_id"],
        "secret_path": values["secret_path"],
        "source_ip": values["source_ip"],
        "user_agent": values["user_agent"],
        "success": values["success"],
        "duration_ms": values["duration_ms"],
        "request_id": values["request_id"],
        "extra_data": values["extra_data"],
    }
    return dumps_canonical(doc).encode("utf-8")


def dumps_canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _bounded_text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    # PostgreSQL text cannot hold NUL
    return str(value).replace("\x00", "")[:limit]


def _json_safe(value: Any) -> Any:
    """Extras reduced to what survives a jsonb round trip unchanged (so hashes re-verify)."""
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        # jsonb prints large floats as integers and cannot hold NaN/Infinity
        if not math.isfinite(value) or abs(value) >= 1e15:
            return str(value)
        return value
    if isinstance(value, datetime):
        return format_timestamp(value)
    return str(value).replace("\x00", "")
