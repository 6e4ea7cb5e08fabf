"""Helpers for the lifecycle tests: a tenant admin with the `admin` scope, outbox readers."""
from __future__ import annotations

import json
import secrets as pyrandom

from tests.secrets_support import ADMIN_SCOPES, Caller

LIFECYCLE_SCOPES = ADMIN_SCOPES + ("admin", "audit:read", "subscriptions:read", "subscriptions:write")


def lifecycle_admin(callers, tenant: str, **kw) -> Caller:
    return callers.user(f"ops-{pyrandom.token_hex(3)}@{tenant}.example", tenant, scopes=LIFECYCLE_SCOPES,
                        role="tenant_admin", **kw)


def events_of(db, tenant: str, event_type: str | None = None) -> list[dict]:
    rows = db.query("SELECT body FROM events WHERE tenant_id = :t AND (CAST(:et AS text) IS NULL OR event_type = :et) "
                    "ORDER BY seq", t=tenant, et=event_type)
    return [json.loads(r["body"]) for r in rows]
