"""ScaiKey's outgoing webhooks (spec/15 section 4): signature check and applying events to the cache.

The scheme is ScaiKey's (`X-ScaiKey-Signature: t=<unix>,v1=<hex>` over "<t>.<raw body>");
ScaiVault's own outgoing webhooks use a different one and share no code with this.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any, Mapping

from ..db import Session
from ..errors import ScaiVaultError
from ..inputs import is_ascii_digits
from . import store

log = logging.getLogger("scaivault.identity.webhooks")

TOLERANCE_SECONDS = 300
_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,128}$")   # printable ASCII: nanoid ids and dotted event names


def _reject(message: str) -> ScaiVaultError:
    # 400 as spec/15 4.3 says; the code tells a signature problem from a malformed body
    return ScaiVaultError("invalid_signature", message, status=400)


def verify_signature(secret: str, headers: Mapping[str, str], raw_body: bytes, *, now: float | None = None) -> None:
    """Raise invalid_signature unless the raw body carries a fresh, valid ScaiKey signature."""
    header = headers.get("X-ScaiKey-Signature")  # werkzeug headers match case-insensitively
    if not header:
        raise _reject("the X-ScaiKey-Signature header is missing")
    timestamp: str | None = None
    digests: list[str] = []
    for pair in header.split(","):
        key, sep, value = pair.strip().partition("=")
        if not sep:
            raise _reject("the X-ScaiKey-Signature header is malformed")
        if key == "t":
            timestamp = value
        elif key == "v1":
            digests.append(value)
    if not is_ascii_digits(timestamp, 12) or not digests:
        raise _reject("the X-ScaiKey-Signature header is malformed")
    separate = headers.get("X-ScaiKey-Timestamp")
    if separate is not None and separate.strip() != timestamp:
        raise _reject("X-ScaiKey-Timestamp differs from the signed timestamp")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise _reject("the signature timestamp is outside the allowed window")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    matched = False
    for digest in digests:  # every candidate is compared, in constant time each
        matched |= hmac.compare_digest(expected, digest.strip().lower())
    if not matched:
        raise _reject("the webhook signature does not match")


def parse_envelope(raw_body: bytes) -> dict[str, Any]:
    """The event envelope with event_id and event_type from the signed body only (ScaiFlow's `id`/`type` too).

    The X-ScaiKey-Event-ID/-Type headers are not signed: taking either from them would let a
    replayed body pass as a new event (a fresh id defeats the dedup) or as another type (issue 9 F14).
    """
    try:
        doc = json.loads(raw_body)
    except ValueError:
        raise ScaiVaultError("invalid_request", "the webhook body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ScaiVaultError("invalid_request", "the webhook body must be a JSON object")
    event_id = doc.get("event_id") or doc.get("id")
    event_type = doc.get("event_type") or doc.get("type")
    if not isinstance(event_id, str) or not _TOKEN_RE.match(event_id):
        raise ScaiVaultError("invalid_request", "the signed webhook body names no usable event_id")
    if not isinstance(event_type, str) or not _TOKEN_RE.match(event_type):
        raise ScaiVaultError("invalid_request", "the signed webhook body names no usable event_type")
    data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
    return {**doc, "event_id": event_id, "event_type": event_type, "data": data}


def claim_event(s: Session, event_id: str, event_type: str) -> bool:
    """Record the event as processed; False if it was processed before (at-least-once delivery)."""
    rows = s.query("""INSERT INTO identity_webhook_events (event_id, event_type) VALUES (:id, :t)
                      ON CONFLICT (event_id) DO NOTHING RETURNING event_id""", id=event_id, t=event_type)
    return bool(rows)


def mark_event(s: Session, event_id: str, event_type: str, outcome: str) -> None:
    s.execute("""INSERT INTO identity_webhook_events (event_id, event_type, outcome) VALUES (:id, :t, :o)
                 ON CONFLICT (event_id) DO UPDATE SET outcome = EXCLUDED.outcome""", id=event_id, t=event_type, o=outcome)


def _object_id(envelope: dict, kind: str) -> str | None:
    data, resource = envelope["data"], envelope.get("resource") if isinstance(envelope.get("resource"), dict) else {}
    for candidate in (data.get("id"), data.get(f"{kind}_id"),
                      resource.get("id") if resource.get("type") in (kind, None) else None):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def _with_defaults(envelope: dict, kind: str, object_id: str) -> dict:
    row = dict(envelope["data"])
    row["id"] = object_id
    if kind in ("tenant",) and not row.get("partner_id") and isinstance(envelope.get("partner_id"), str):
        row["partner_id"] = envelope["partner_id"]
    if kind in ("user", "group") and not row.get("tenant_id"):
        tenant = row.get("tenant") if isinstance(row.get("tenant"), dict) else {}
        row["tenant_id"] = tenant.get("id") or envelope.get("tenant_id")
    return row


def _membership(envelope: dict) -> tuple[str, str, str] | None:
    data = envelope["data"]
    resource = envelope.get("resource") if isinstance(envelope.get("resource"), dict) else {}
    group = data.get("group_id")
    if not group and isinstance(data.get("group"), dict):
        group = data["group"].get("id")
    if not group and resource.get("type") == "group":
        group = resource.get("id")
    member_type = data.get("member_type") if data.get("member_type") in ("user", "group") else "user"
    if member_type == "group":
        member = data.get("member_id") or data.get("child_group_id")
    else:
        member = data.get("member_id") or data.get("user_id")
        if not member and isinstance(data.get("user"), dict):
            member = data["user"].get("id")
    if isinstance(group, str) and group and isinstance(member, str) and member:
        return group, member_type, member
    return None


def apply_event(s: Session, envelope: dict) -> str:
    """Apply one event to the cache; returns 'applied' or 'ignored' (unknown or unusable events)."""
    event_type = envelope["event_type"]
    kind, _, verb = event_type.partition(".")
    if kind in ("partner", "tenant", "user", "group", "application") and verb in ("created", "updated", "deleted",
                                                                                  "suspended", "activated",
                                                                                  "mfa_enabled", "mfa_disabled"):
        object_id = _object_id(envelope, kind)
        if object_id is None:
            return "ignored"
        if verb == "deleted":
            store.soft_delete(s, kind, object_id)
            return "applied"
        if kind == "user" and verb in ("suspended", "activated"):
            status = "SUSPENDED" if verb == "suspended" else "ACTIVE"
            if not store.set_user_fields(s, object_id, status=status):
                store.upsert_user(s, {**_with_defaults(envelope, "user", object_id), "status": status})
            return "applied"
        if kind == "user" and verb in ("mfa_enabled", "mfa_disabled"):
            store.set_user_fields(s, object_id, mfa_enabled=verb == "mfa_enabled")
            return "applied"
        if verb not in ("created", "updated"):
            return "ignored"
        row = _with_defaults(envelope, kind, object_id)
        {"partner": store.upsert_partner, "tenant": store.upsert_tenant, "user": store.upsert_user,
         "group": store.upsert_group, "application": store.upsert_application}[kind](s, row)
        return "applied"
    if event_type in ("group.member_added", "group_membership.added", "group.member_removed",
                      "group_membership.removed"):
        membership = _membership(envelope)
        if membership is None:
            return "ignored"
        if event_type.endswith("added"):
            store.add_member(s, *membership)
        else:
            store.remove_member(s, *membership)
        return "applied"
    # application assignments, password changes, session events: nothing the cache keeps
    return "ignored"
