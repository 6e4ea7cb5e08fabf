"""Subscriptions (spec/30 section 6): identity-owned, path globs + event types, push or long-poll.

A polling subscription's buffer is rows of subscription_events (references to outbox rows),
filled by the dispatcher, bounded by buffer_size (oldest dropped and counted), emptied by
ack; unacknowledged events come back on the next poll. Whatever the buffer holds, an event
is handed out only if its owner may read its path at that moment (checked per poll, and per
attempt for push subscriptions); events the owner may not read are dropped from the buffer.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable

from ..audit import AuditEntry, record
from ..auth.identity import Identity, TenantContext
from ..db import Database, Session
from ..errors import ScaiVaultError, ValidationFailed
from ..policy.glob import PathPattern
from ..policy.rules import RequestContext
from .policies import decode_cursor, encode_cursor, iso, page_limit
from .secret_policies import TenantScope, new_id
from .webhooks import WebhookService, validate_events, validate_filters, validate_secret

AuditFn = Callable[..., AuditEntry]
MAX_TIMEOUT = 60
DEFAULT_TIMEOUT = 30
DEFAULT_MAX_EVENTS = 100
MAX_EVENTS = 1000
DEFAULT_BUFFER = 1000
MAX_BUFFER = 100_000
MAX_PATHS = 50


def subscription_view(row: dict) -> dict:
    delivery: dict[str, Any] = {"type": row["delivery_type"]}
    if row["delivery_type"] == "polling":
        delivery["buffer_size"] = row["buffer_size"]
    elif row.get("url"):
        delivery["url"] = row["url"]
    return {"id": row["id"], "name": row["name"], "status": row["status"], "identity_id": row["identity_id"],
            "paths": row["paths"], "events": row["events"], "filters": row["filters"], "delivery": delivery,
            "dropped_events": row["dropped_events"], "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"])}


def _validate_paths(paths: Any) -> list[str]:
    if not isinstance(paths, list) or not paths or len(paths) > MAX_PATHS:
        raise ValidationFailed({"paths": f"must be a non-empty list of at most {MAX_PATHS} globs"})
    for p in paths:
        PathPattern.compile(p)            # 400 invalid_glob
    return list(dict.fromkeys(paths))


class SubscriptionService:
    """CRUD, long-poll and ack; `listener` wakes polls (scaivault.events.pump.Listener)."""

    def __init__(self, db: Database, keyring, settings, listener_factory: Callable[[], Any] | None = None):
        self.db = db
        self.webhooks = WebhookService(db, keyring, settings)
        self.listener_factory = listener_factory

    # ---------------------------------------------------------------- CRUD
    def _fetch(self, s: Session, scope: TenantScope, sub_id: str) -> dict:
        row = s.one("""SELECT sub.*, w.url FROM subscriptions sub LEFT JOIN webhooks w ON w.id = sub.webhook_id
                        WHERE sub.id = :id AND sub.tenant_id = :t""", id=sub_id, t=scope.tenant_id)
        if row is None:
            raise ScaiVaultError("subscription_not_found", "no such subscription", details={"subscription_id": str(sub_id)[:64]})
        return row

    def get_owned(self, scope: TenantScope, sub_id: str, identity: Identity, *, admin: bool) -> dict:
        """The subscription if the caller owns it (or, for management, is a tenant admin); else 404/403."""
        with self.db.session() as s:
            row = self._fetch(s, scope, sub_id)
        if row["owner_principal"] != identity.principal and not admin:
            raise ScaiVaultError("forbidden", "only the subscription's owner may use it",
                                 details={"subscription_id": sub_id})
        return row

    def create(self, scope: TenantScope, identity: Identity, body: dict, audit: AuditFn) -> dict:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise ValidationFailed({"name": "is required: 1..128 characters"})
        paths = _validate_paths(body.get("paths"))
        events = validate_events(body.get("events"))
        filters = validate_filters(body.get("filters"))
        delivery = body.get("delivery")
        if not isinstance(delivery, dict) or delivery.get("type") not in ("webhook", "polling"):
            raise ValidationFailed({"delivery.type": "must be webhook or polling"})
        buffer_size = delivery.get("buffer_size", DEFAULT_BUFFER)
        if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or not 1 <= buffer_size <= MAX_BUFFER:
            raise ValidationFailed({"delivery.buffer_size": f"must be an integer between 1 and {MAX_BUFFER}"})
        sub_id = new_id("sub_")
        with self.db.transaction() as s:
            webhook_id = None
            if delivery["type"] == "webhook":
                from ..events.outbound import validate_webhook_url

                validate_webhook_url(delivery.get("url"), self.webhooks.settings)
                secret = validate_secret(delivery.get("secret"), "delivery.secret")
                hook = self.webhooks.insert(s, scope, name=f"subscription {sub_id}", url=delivery["url"], secret=secret,
                                            events=events, filters=filters, enabled=True, actor=identity.identity_id,
                                            subscription_id=sub_id)
                webhook_id = hook["id"]
            row = s.one("""INSERT INTO subscriptions (id, tenant_id, partner_id, owner_principal, identity_id, identity_type,
                                                      name, paths, events, filters, delivery_type, webhook_id, buffer_size)
                           VALUES (:id, :t, :p, :owner, :i, :it, :name, CAST(:paths AS jsonb), CAST(:events AS jsonb),
                                   CAST(:filters AS jsonb), :dt, :wh, :buf) RETURNING *""",
                        id=sub_id, t=scope.tenant_id, p=scope.partner_id, owner=identity.principal, i=identity.identity_id,
                        it=identity.identity_type, name=name.strip(), paths=json.dumps(paths), events=json.dumps(events),
                        filters=json.dumps(filters), dt=delivery["type"], wh=webhook_id, buf=buffer_size)
            record(s, audit("subscription_create", extra={"subscription_id": sub_id, "delivery": delivery["type"]}))
        from ..lifecycle.hooks import ACCESS_LISTENERS

        ACCESS_LISTENERS.invalidate()
        return subscription_view({**row, "url": delivery.get("url")})

    def list(self, scope: TenantScope, identity: Identity, admin: bool, limit: Any, cursor: str | None) -> dict:
        size = page_limit(limit, 50, 200)
        after = decode_cursor(cursor)
        rows = self.db.query("""SELECT sub.*, w.url FROM subscriptions sub LEFT JOIN webhooks w ON w.id = sub.webhook_id
                                 WHERE sub.tenant_id = :t AND (:admin OR sub.owner_principal = :i)
                                   AND (CAST(:after AS text) IS NULL OR sub.id > :after) ORDER BY sub.id LIMIT :n""",
                             t=scope.tenant_id, admin=admin, i=identity.principal, after=after, n=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return {"data": [subscription_view(r) for r in rows],
                "cursor": encode_cursor(rows[-1]["id"]) if more else None, "has_more": more}

    def update(self, scope: TenantScope, row: dict, body: dict, audit: AuditFn) -> dict:
        sets, params = [], {}
        if "name" in body:
            if not isinstance(body["name"], str) or not body["name"].strip():
                raise ValidationFailed({"name": "must be 1..128 characters"})
            sets.append("name = :name")
            params["name"] = body["name"].strip()
        if "paths" in body:
            sets.append("paths = CAST(:paths AS jsonb)")
            params["paths"] = json.dumps(_validate_paths(body["paths"]))
        if "events" in body:
            sets.append("events = CAST(:events AS jsonb)")
            params["events"] = json.dumps(validate_events(body["events"]))
        if "filters" in body:
            sets.append("filters = CAST(:filters AS jsonb)")
            params["filters"] = json.dumps(validate_filters(body["filters"]))
        delivery = body.get("delivery")
        if delivery is not None:
            if not isinstance(delivery, dict) or delivery.get("type", row["delivery_type"]) != row["delivery_type"]:
                raise ValidationFailed({"delivery.type": "is fixed at creation"})
            if "buffer_size" in delivery:
                buf = delivery["buffer_size"]
                if not isinstance(buf, int) or isinstance(buf, bool) or not 1 <= buf <= MAX_BUFFER:
                    raise ValidationFailed({"delivery.buffer_size": f"must be between 1 and {MAX_BUFFER}"})
                sets.append("buffer_size = :buf")
                params["buf"] = buf
        if not sets and not (delivery and row["webhook_id"] and {"url", "secret"} & set(delivery)):
            raise ValidationFailed({"body": "nothing to change"})
        with self.db.transaction() as s:
            if sets:
                s.execute(f"UPDATE subscriptions SET {', '.join(sets)}, updated_at = now() WHERE id = :id",
                          id=row["id"], **params)
            record(s, audit("subscription_update", extra={"subscription_id": row["id"], "fields": sorted(body)}))
        if delivery and row["webhook_id"] and ({"url", "secret"} & set(delivery)):
            self._update_push(scope, row["webhook_id"], delivery)
        with self.db.session() as s:
            return subscription_view(self._fetch(s, scope, row["id"]))

    def _update_push(self, scope: TenantScope, webhook_id: str, delivery: dict) -> None:
        from ..events.outbound import validate_webhook_url

        with self.db.transaction() as s:
            s.execute("""UPDATE webhooks SET enabled = true, status = 'healthy', consecutive_failures = 0,
                                failing_since = NULL, disabled_reason = NULL WHERE id = :id""", id=webhook_id)
            s.execute("UPDATE subscriptions SET status = 'active' WHERE webhook_id = :id", id=webhook_id)
            if "url" in delivery:
                validate_webhook_url(delivery["url"], self.webhooks.settings)
                s.execute("UPDATE webhooks SET url = :u WHERE id = :id", u=delivery["url"], id=webhook_id)
            if "secret" in delivery:
                version = s.scalar("UPDATE webhooks SET secret_version = secret_version + 1 WHERE id = :id "
                                   "RETURNING secret_version", id=webhook_id)
                sealed = self.webhooks.seal(scope, webhook_id, version,
                                            validate_secret(delivery["secret"], "delivery.secret"))
                s.execute("UPDATE webhooks SET sealed_secret = :s WHERE id = :id", s=sealed, id=webhook_id)

    def delete(self, scope: TenantScope, row: dict, audit: AuditFn) -> None:
        with self.db.transaction() as s:
            s.execute("DELETE FROM subscriptions WHERE id = :id", id=row["id"])
            if row["webhook_id"]:
                s.execute("DELETE FROM webhooks WHERE id = :id", id=row["webhook_id"])
            record(s, audit("subscription_delete", extra={"subscription_id": row["id"]}))

    # ---------------------------------------------------------------- polling
    def _buffered(self, sub_id: str, since_seq: int | None, limit: int) -> list[dict]:
        return self.db.query("""SELECT e.seq, e.path, e.body FROM subscription_events b JOIN events e ON e.seq = b.event_seq
                                 WHERE b.subscription_id = :id AND (CAST(:since AS bigint) IS NULL OR b.event_seq > :since)
                                 ORDER BY b.event_seq LIMIT :n""", id=sub_id, since=since_seq, n=limit)

    def poll(self, scope: TenantScope, row: dict, *, timeout: int, since_event_id: str | None, max_events: int,
             can_read: Callable[[str], bool], audit: AuditFn) -> dict:
        """Long-poll: answer as soon as the buffer holds a readable event, or with nothing at the timeout."""
        if row["delivery_type"] != "polling":
            raise ScaiVaultError("invalid_request", "this subscription pushes to a webhook; it cannot be polled")
        since_seq = None
        if since_event_id:
            since_seq = self.db.scalar("SELECT seq FROM events WHERE id = :id AND tenant_id = :t",
                                       id=since_event_id, t=scope.tenant_id)
            if since_seq is None:
                raise ScaiVaultError("invalid_request", "since_event_id names no event of this tenant",
                                     details={"since_event_id": since_event_id[:64]})
        listener = self.listener_factory() if self.listener_factory else None
        waiter = listener.waiter(row["id"]) if listener else None
        deadline = time.monotonic() + timeout
        try:
            while True:
                rows = self._buffered(row["id"], since_seq, max_events + 1)
                hidden = [r["seq"] for r in rows if r["path"] is None or not can_read(r["path"])]
                if hidden:       # never handed out, never kept: the owner may not read these paths now
                    self.db.execute("DELETE FROM subscription_events WHERE subscription_id = :id AND event_seq = ANY(:s)",
                                    id=row["id"], s=hidden)
                    continue
                remaining = deadline - time.monotonic()
                if rows or remaining <= 0:
                    break
                # woken by the dispatcher's NOTIFY; without a live listener, re-check the buffer every second
                step = min(remaining, 5.0 if listener is not None and listener.connected.is_set() else 1.0)
                if waiter is not None:
                    waiter.wait(step)
                    waiter.clear()
                else:
                    time.sleep(step)
        finally:
            if waiter is not None:
                listener.forget(row["id"], waiter)
        more = len(rows) > max_events
        rows = rows[:max_events]
        if rows:
            with self.db.transaction() as s:
                s.execute("""UPDATE subscription_events SET delivered_count = delivered_count + 1
                              WHERE subscription_id = :id AND event_seq = ANY(:s)""", id=row["id"], s=[r["seq"] for r in rows])
                record(s, audit("subscription_event", extra={"subscription_id": row["id"], "events": len(rows)}))
        dropped = self.db.scalar("SELECT dropped_events FROM subscriptions WHERE id = :id", id=row["id"])
        return {"events": [json.loads(r["body"]) for r in rows], "has_more": more, "dropped_events": dropped or 0}

    def ack(self, row: dict, event_ids: list[str]) -> dict:
        n = self.db.execute("""DELETE FROM subscription_events b USING events e
                                WHERE b.subscription_id = :id AND e.seq = b.event_seq AND e.id = ANY(:ids)""",
                            id=row["id"], ids=event_ids)
        return {"acknowledged": n}


def subscription_gate(runtime) -> Callable[[dict, dict], bool]:
    """For push subscriptions: may the owner read the event's path now? (stored roles, policies bound to
    it or its cached groups; conditions that need a live request, such as IP or MFA, do not hold, so such
    grants fail closed)."""
    from ..auth.authenticator import user_is_inactive
    from ..auth.roles import stored_grants
    from ..identity.store import group_identities_of, user

    def allowed(hook: dict, event: dict) -> bool:
        if event["path"] is None:
            return False
        with runtime.db.session() as s:
            sub = s.one("SELECT * FROM subscriptions WHERE id = :id", id=hook["subscription_id"])
            if sub is None:
                return False
            subject = sub["owner_principal"].split("/", 1)[1]
            if sub["identity_type"] == "user" and user_is_inactive(user(s, subject)):
                return False        # a suspended or deleted owner reads nothing, so receives nothing
            grants = tuple(stored_grants(s, sub["owner_principal"]))
            groups = group_identities_of(s, sub["tenant_id"], sub["identity_id"])
        identity = Identity(identity_id=sub["identity_id"], identity_type=sub["identity_type"],
                            subject=subject, tenant_id=sub["tenant_id"],
                            partner_id=sub["partner_id"], scopes=frozenset(), groups=groups, grants=grants)
        tenant = TenantContext(sub["tenant_id"], sub["partner_id"])
        return runtime.access.decide(identity, tenant, event["path"], "read", RequestContext()).allowed
    return allowed
