"""Webhooks (spec/30 section 5): CRUD with a write-only sealed signing secret, the delivery log,
redelivery and the synchronous test delivery."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

from ..audit import AuditEntry, record
from ..config import parse_duration
from ..db import Database, Session
from ..errors import ScaiVaultError, ValidationFailed
from ..events.delivery import DeliveryWorker, delivery_view, secret_context
from ..events.outbound import validate_webhook_url
from ..events.outbox import SystemOrigin, envelope, valid_event_pattern
from ..lifecycle.hooks import ACCESS_LISTENERS
from .policies import decode_cursor, encode_cursor, iso, page_limit
from .secret_policies import TenantScope, new_id

AuditFn = Callable[..., AuditEntry]
MIN_SECRET = 16
MAX_SECRET = 1024
DEFAULT_PREVIOUS_TTL = "24h"


def webhook_view(row: dict) -> dict:
    out = {"id": row["id"], "name": row["name"], "url": row["url"], "events": row["events"],
           "filters": row["filters"], "enabled": row["enabled"], "status": row["status"],
           "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}
    if row.get("previous_secret_expires_at") is not None:
        out["previous_secret_expires_at"] = iso(row["previous_secret_expires_at"])
    if row.get("disabled_reason"):
        out["disabled_reason"] = row["disabled_reason"]
    return out


def validate_events(events: Any, field: str = "events") -> list[str]:
    if not isinstance(events, list) or not events or len(events) > 50:
        raise ValidationFailed({field: "must be a non-empty list of event types (at most 50)"})
    bad = [e for e in events if not valid_event_pattern(e)]
    if bad:
        raise ValidationFailed({field: f"unknown event types: {', '.join(map(str, bad[:5]))}"})
    return list(dict.fromkeys(events))


def validate_filters(filters: Any) -> dict:
    if filters is None:
        return {}
    if not isinstance(filters, dict) or set(filters) - {"path_prefix", "secret_type", "tags"}:
        raise ValidationFailed({"filters": "may hold path_prefix, secret_type and tags only"})
    for key in ("path_prefix", "secret_type"):
        if key in filters and filters[key] is not None and (not isinstance(filters[key], str) or len(filters[key]) > 512):
            raise ValidationFailed({f"filters.{key}": "must be a string"})
    tags = filters.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or len(tags) > 50):
        raise ValidationFailed({"filters.tags": "must be a list of strings"})
    return {k: v for k, v in filters.items() if v not in (None, "", [])}


def validate_secret(secret: Any, field: str = "secret") -> str:
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET or "\x00" in secret:
        raise ValidationFailed({field: f"is required: {MIN_SECRET} to {MAX_SECRET} characters (32 or more recommended)"})
    return secret


class WebhookService:
    """Tenant webhooks; the signing secret is sealed under the tenant key and never returned."""

    def __init__(self, db: Database, keyring, settings):
        self.db = db
        self.keyring = keyring
        self.settings = settings

    def _fetch(self, s: Session, scope: TenantScope, webhook_id: str, lock: bool = False) -> dict:
        row = s.one("SELECT * FROM webhooks WHERE id = :id AND tenant_id = :t AND subscription_id IS NULL"
                    + (" FOR UPDATE" if lock else ""), id=webhook_id, t=scope.tenant_id)
        if row is None:
            raise ScaiVaultError("webhook_not_found", "no such webhook", details={"webhook_id": str(webhook_id)[:64]})
        return row

    def seal(self, scope: TenantScope, webhook_id: str, version: int, secret: str) -> bytes:
        hook = {"id": webhook_id, "tenant_id": scope.tenant_id, "partner_id": scope.partner_id or ""}
        return self.keyring.seal(secret_context(hook, version), secret.encode("utf-8"))

    def insert(self, s: Session, scope: TenantScope, *, name: str, url: str, secret: str, events: list[str],
               filters: dict, enabled: bool, actor: str, subscription_id: str | None = None) -> dict:
        """Validated insert (also used for a push subscription's own webhook)."""
        webhook_id = new_id("wh_")
        return s.one("""INSERT INTO webhooks (id, tenant_id, partner_id, name, url, sealed_secret, events, filters, enabled,
                                              subscription_id, created_by)
                        VALUES (:id, :t, :p, :name, :url, :sealed, CAST(:events AS jsonb), CAST(:filters AS jsonb),
                                :enabled, :sub, :actor) RETURNING *""",
                     id=webhook_id, t=scope.tenant_id, p=scope.partner_id or "", name=name, url=url,
                     sealed=self.seal(scope, webhook_id, 1, secret), events=json.dumps(events),
                     filters=json.dumps(filters), enabled=enabled, sub=subscription_id, actor=actor)

    def create(self, scope: TenantScope, body: dict, actor: str, audit: AuditFn) -> dict:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise ValidationFailed({"name": "is required: 1..128 characters"})
        validate_webhook_url(body.get("url"), self.settings)
        events = validate_events(body.get("events"))
        secret = validate_secret(body.get("secret"))
        filters = validate_filters(body.get("filters"))
        self.keyring.active_tenant_key(scope.partner_id or "", scope.tenant_id)
        with self.db.transaction() as s:
            row = self.insert(s, scope, name=name.strip(), url=body["url"], secret=secret, events=events,
                              filters=filters, enabled=body.get("enabled", True) is not False, actor=actor)
            record(s, audit("webhook_create", extra={"webhook_id": row["id"], "events": events}))
        ACCESS_LISTENERS.invalidate()
        return webhook_view(row)

    def list(self, scope: TenantScope, limit: Any, cursor: str | None) -> dict:
        size = page_limit(limit, 50, 200)
        after = decode_cursor(cursor)
        rows = self.db.query("""SELECT * FROM webhooks WHERE tenant_id = :t AND subscription_id IS NULL
                                   AND (CAST(:after AS text) IS NULL OR id > :after) ORDER BY id LIMIT :n""",
                             t=scope.tenant_id, after=after, n=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return {"webhooks": [webhook_view(r) for r in rows],
                "cursor": encode_cursor(rows[-1]["id"]) if more else None, "has_more": more}

    def get(self, scope: TenantScope, webhook_id: str) -> dict:
        with self.db.session() as s:
            row = self._fetch(s, scope, webhook_id)
            stats = s.one("""SELECT count(*) AS n, count(*) FILTER (WHERE status = 'success') AS ok,
                                    avg(duration_ms) FILTER (WHERE duration_ms IS NOT NULL) AS latency
                               FROM webhook_deliveries
                              WHERE webhook_id = :id AND created_at > now() - interval '24 hours'
                                AND status <> 'pending'""", id=webhook_id)
            last = s.one("""SELECT * FROM webhook_deliveries WHERE webhook_id = :id AND last_attempt_at IS NOT NULL
                             ORDER BY last_attempt_at DESC LIMIT 1""", id=webhook_id)
        out = webhook_view(row)
        out["statistics"] = {"deliveries_24h": stats["n"],
                             "success_rate_24h": round(stats["ok"] / stats["n"], 4) if stats["n"] else None,
                             "avg_latency_ms": int(stats["latency"]) if stats["latency"] is not None else None}
        out["last_delivery"] = None if last is None else {
            "id": last["id"], "timestamp": iso(last["last_attempt_at"]), "status": last["status"],
            "response_code": last["response_code"]}
        return out

    def update(self, scope: TenantScope, webhook_id: str, body: dict, audit: AuditFn) -> dict:
        changes: dict[str, Any] = {}
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"].strip() or len(body["name"]) > 128:
                raise ValidationFailed({"name": "must be 1..128 characters"})
            changes["name"] = body["name"].strip()
        if "url" in body:
            validate_webhook_url(body["url"], self.settings)
            changes["url"] = body["url"]
        if "events" in body:
            changes["events"] = json.dumps(validate_events(body["events"]))
        if "filters" in body:
            changes["filters"] = json.dumps(validate_filters(body["filters"]))
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise ValidationFailed({"enabled": "must be true or false"})
            changes["enabled"] = body["enabled"]
        ttl = None
        if "previous_secret_ttl" in body and "secret" not in body:
            raise ValidationFailed({"previous_secret_ttl": "only with a new secret"})
        if "secret" in body:
            validate_secret(body["secret"])
            try:
                ttl = parse_duration(body.get("previous_secret_ttl") or DEFAULT_PREVIOUS_TTL)
            except ValueError:
                raise ScaiVaultError("invalid_duration", "previous_secret_ttl must be a duration such as 24h",
                                     details={"field": "previous_secret_ttl"}) from None
        if not changes and ttl is None:
            raise ValidationFailed({"body": "nothing to change"})
        with self.db.transaction() as s:
            row = self._fetch(s, scope, webhook_id, lock=True)
            sets = [f"{k} = CAST(:{k} AS jsonb)" if k in ("events", "filters") else f"{k} = :{k}" for k in changes]
            params: dict[str, Any] = dict(changes)
            if changes.get("enabled") is True and not row["enabled"]:
                sets += ["status = 'healthy'", "consecutive_failures = 0", "failing_since = NULL", "disabled_reason = NULL"]
            if ttl is not None:
                version = row["secret_version"] + 1
                sets += ["sealed_previous_secret = sealed_secret", "previous_secret_version = secret_version",
                         "previous_secret_expires_at = now() + make_interval(secs => :ttl)",
                         "sealed_secret = :sealed", "secret_version = :version"]
                params.update(ttl=ttl, version=version, sealed=self.seal(scope, webhook_id, version, body["secret"]))
            row = s.one(f"UPDATE webhooks SET {', '.join(sets)}, updated_at = now() WHERE id = :id RETURNING *",
                        id=webhook_id, **params)
            record(s, audit("webhook_update", extra={"webhook_id": webhook_id,
                                                     "fields": sorted(set(body) - {"secret"} | ({"secret"} if ttl else set()))}))
        ACCESS_LISTENERS.invalidate()
        return webhook_view(row)

    def delete(self, scope: TenantScope, webhook_id: str, audit: AuditFn) -> None:
        with self.db.transaction() as s:
            self._fetch(s, scope, webhook_id, lock=True)
            s.execute("DELETE FROM webhooks WHERE id = :id", id=webhook_id)
            s.execute("""UPDATE rotation_policies SET webhook_ids = webhook_ids - CAST(:id AS text)
                          WHERE tenant_id = :t AND webhook_ids ? :id""", id=webhook_id, t=scope.tenant_id)
            record(s, audit("webhook_delete", extra={"webhook_id": webhook_id}))
        ACCESS_LISTENERS.invalidate()

    def deliveries(self, scope: TenantScope, webhook_id: str, status: str | None, limit: Any, cursor: str | None) -> dict:
        if status not in (None, "", "success", "failed", "pending", "skipped"):
            raise ScaiVaultError("invalid_request", "status must be success, failed or pending")
        with self.db.session() as s:
            self._fetch(s, scope, webhook_id)
        size = page_limit(limit, 50, 200)
        after = decode_cursor(cursor)
        ts = last_id = None
        if after:
            try:
                stamp, last_id = after.split("|", 1)
                ts = datetime.fromisoformat(stamp)
            except ValueError:
                raise ScaiVaultError("invalid_cursor", "the cursor is malformed; start again without it") from None
        rows = self.db.query("""SELECT * FROM webhook_deliveries WHERE webhook_id = :w
                                   AND (CAST(:status AS text) IS NULL OR status = :status)
                                   AND (CAST(:ts AS timestamptz) IS NULL OR (created_at, id) < (:ts, :id))
                                 ORDER BY created_at DESC, id DESC LIMIT :n""",
                             w=webhook_id, status=status or None, ts=ts, id=last_id, n=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        cursor_out = encode_cursor(f"{rows[-1]['created_at'].isoformat()}|{rows[-1]['id']}") if more else None
        return {"deliveries": [delivery_view(r) for r in rows], "cursor": cursor_out, "has_more": more}

    def redeliver(self, scope: TenantScope, webhook_id: str, delivery_id: str, audit: AuditFn) -> dict:
        with self.db.transaction() as s:
            self._fetch(s, scope, webhook_id)
            old = s.one("SELECT * FROM webhook_deliveries WHERE id = :id AND webhook_id = :w", id=delivery_id, w=webhook_id)
            if old is None:
                raise ScaiVaultError("delivery_not_found", "no such delivery", details={"delivery_id": delivery_id[:64]})
            row = s.one("""INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_seq, event_id, event_type,
                                                           redelivery_of)
                           VALUES (:id, :w, :t, :seq, :eid, :etype, :old) RETURNING *""",
                        id=new_id("del_"), w=webhook_id, t=scope.tenant_id, seq=old["event_seq"], eid=old["event_id"],
                        etype=old["event_type"], old=delivery_id)
            s.execute("SELECT pg_notify('scaivault_deliveries', '')")
            record(s, audit("webhook_redeliver", extra={"webhook_id": webhook_id, "delivery_id": row["id"],
                                                        "redelivery_of": delivery_id, "event_id": old["event_id"]}))
        return delivery_view(row)

    def test(self, scope: TenantScope, webhook_id: str, identity_id: str, request_id: str | None,
             audit: AuditFn) -> dict:
        """A synthetic `webhook.test` event sent now through the normal signing path (never fanned out)."""
        origin = SystemOrigin(scope.tenant_id, scope.partner_id, "webhook-test", request_id)
        origin.identity_id = identity_id
        doc = envelope("webhook.test", origin, {"webhook_id": webhook_id, "message": "test delivery from ScaiVault"}, None)
        with self.db.transaction() as s:
            hook = self._fetch(s, scope, webhook_id)
            if not hook["enabled"]:
                raise ScaiVaultError("invalid_request", "the webhook is disabled; enable it first")
            seq = s.scalar("""INSERT INTO events (id, tenant_id, partner_id, event_type, body, dispatched_at)
                              VALUES (:id, :t, :p, 'webhook.test', :body, now()) RETURNING seq""",
                           id=doc["event_id"], t=scope.tenant_id, p=scope.partner_id,
                           body=json.dumps(doc, separators=(",", ":")))
            delivery_id = new_id("del_")
            s.execute("""INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_seq, event_id, event_type,
                                                         next_attempt_at)
                         VALUES (:id, :w, :t, :seq, :eid, 'webhook.test', now() + interval '100 years')""",
                      id=delivery_id, w=webhook_id, t=scope.tenant_id, seq=seq, eid=doc["event_id"])
            record(s, audit("webhook_test", extra={"webhook_id": webhook_id, "delivery_id": delivery_id}))
        worker = DeliveryWorker(self.db, self.keyring, self.settings)
        try:
            row = worker.deliver_now(delivery_id)
        finally:
            worker.close()
        return {"delivery_id": delivery_id, "event_id": doc["event_id"], "status": row["status"],
                "response_code": row["response_code"], "duration_ms": row["duration_ms"], "error": row["error"]}
