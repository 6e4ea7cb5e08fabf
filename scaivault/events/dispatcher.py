"""Fan-out: undispatched outbox rows become webhook deliveries and subscription buffer entries.

One transaction per batch claims events with FOR UPDATE SKIP LOCKED (several dispatchers
cooperate, none blocks), inserts the deliveries and buffer rows, and marks the events
dispatched: a crash before COMMIT leaves them undispatched, so nothing is lost or doubled.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from ..policy.glob import PathPattern
from ..services.secret_policies import new_id
from .outbox import event_type_matches

log = logging.getLogger("scaivault.events")

SUBSCRIPTIONS_CHANNEL = "scaivault_subscriptions"
ROTATION_EVENTS = ("rotation.due", "rotation.overdue", "rotation.completed", "rotation.failed", "secret.rotated")


def _filters_match(filters: dict, event: dict, meta: dict | None) -> bool:
    """Webhook filters: every set filter must hold; events without a path fail a path filter."""
    prefix = filters.get("path_prefix")
    if prefix and not (event["path"] or "").startswith(prefix):
        return False
    if filters.get("secret_type") and (meta is None or meta["secret_type"] != filters["secret_type"]):
        return False
    tags = filters.get("tags")
    if tags:
        have = set(((meta or {}).get("metadata") or {}).get("tags") or [])
        if not have & set(tags):                    # any of the listed tags (decision)
            return False
    return True


def _subscription_matches(sub: dict, event: dict, compiled: dict) -> bool:
    if not event_type_matches(sub["events"], event["event_type"]) or event["path"] is None:
        return False
    patterns = compiled.setdefault(sub["id"], [PathPattern.compile(p) for p in sub["paths"]])
    if not any(p.matches(event["path"]) for p in patterns):
        return False
    return _filters_match(sub["filters"] or {}, event, compiled.get(("secret", event["tenant_id"], event["path"])))


def dispatch(db, batch: int = 500) -> int:
    """Fan out one batch of undispatched events; returns how many were dispatched."""
    with db.transaction() as s:
        events = s.query("""SELECT seq, id, tenant_id, event_type, path, body FROM events
                             WHERE dispatched_at IS NULL ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED""", n=batch)
        if not events:
            return 0
        tenants = list({e["tenant_id"] for e in events if e["tenant_id"]})
        hooks = s.query("""SELECT id, tenant_id, events, filters, subscription_id FROM webhooks
                            WHERE tenant_id = ANY(:t) AND enabled AND subscription_id IS NULL""", t=tenants) if tenants else []
        subs = s.query("""SELECT * FROM subscriptions WHERE tenant_id = ANY(:t) AND status = 'active'""",
                       t=tenants) if tenants else []
        policy_hooks: dict[str, list[str]] = {}
        policy_ids = set()
        for e in events:
            if e["event_type"] in ROTATION_EVENTS:
                pid = json.loads(e["body"])["data"].get("rotation_policy_id")
                if pid:
                    policy_ids.add(pid)
                    e["rotation_policy_id"] = pid
        if policy_ids:
            for r in s.query("SELECT id, webhook_ids FROM rotation_policies WHERE id = ANY(:ids)", ids=list(policy_ids)):
                policy_hooks[r["id"]] = r["webhook_ids"]
        compiled: dict = {}
        needs_secret = any(h["filters"].get("secret_type") or h["filters"].get("tags") for h in hooks) or any(
            (sub["filters"] or {}).get("secret_type") or (sub["filters"] or {}).get("tags") for sub in subs)
        if needs_secret:
            pairs = {(e["tenant_id"], e["path"]) for e in events if e["path"] and e["tenant_id"]}
            for r in s.query("""SELECT tenant_id, path, secret_type, metadata FROM secrets
                                 WHERE tenant_id IS NOT NULL AND (tenant_id, path) IN
                                       (SELECT * FROM unnest(CAST(:t AS text[]), CAST(:p AS text[])))""",
                             t=[p[0] for p in pairs], p=[p[1] for p in pairs]) if pairs else []:
                compiled[("secret", r["tenant_id"], r["path"])] = r
        d_hook, d_seq, d_event, d_type = [], [], [], []
        b_sub, b_seq = [], []
        enabled = {h["id"] for h in hooks}
        for e in events:
            secret = compiled.get(("secret", e["tenant_id"], e["path"]))
            targets = set()
            for h in hooks:
                if h["tenant_id"] == e["tenant_id"] and event_type_matches(h["events"], e["event_type"]) \
                        and _filters_match(h["filters"] or {}, e, secret):
                    targets.add(h["id"])
            # rotation events of a policy also reach its webhook_ids, whatever their event list (filters still apply)
            for hid in policy_hooks.get(e.get("rotation_policy_id") or "", []):
                h = next((x for x in hooks if x["id"] == hid), None)
                if h is not None and hid in enabled and _filters_match(h["filters"] or {}, e, secret):
                    targets.add(hid)
            for sub in subs:
                if sub["tenant_id"] == e["tenant_id"] and _subscription_matches(sub, e, compiled):
                    if sub["delivery_type"] == "webhook" and sub["webhook_id"]:
                        targets.add(sub["webhook_id"])
                    elif sub["delivery_type"] == "polling":
                        b_sub.append(sub["id"])
                        b_seq.append(e["seq"])
            for hid in sorted(targets):
                d_hook.append(hid)
                d_seq.append(e["seq"])
                d_event.append(e["id"])
                d_type.append(e["event_type"])
        if d_hook:
            s.execute("""INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_seq, event_id, event_type)
                         SELECT x.id, w.id, w.tenant_id, x.seq, x.event_id, x.event_type
                           FROM unnest(CAST(:ids AS text[]), CAST(:h AS text[]), CAST(:s AS bigint[]),
                                       CAST(:e AS text[]), CAST(:ty AS text[])) AS x(id, hook, seq, event_id, event_type)
                           JOIN webhooks w ON w.id = x.hook""",
                      ids=[new_id("del_") for _ in d_hook], h=d_hook, s=d_seq, e=d_event, ty=d_type)
            s.execute("SELECT pg_notify('scaivault_deliveries', '')")
        if b_sub:
            # serialise concurrent dispatchers per subscription before touching its buffer (rows locked in
            # id order, so never a deadlock): the trim's count then sees what an earlier one committed
            s.execute("SELECT id FROM subscriptions WHERE id = ANY(:ids) ORDER BY id FOR UPDATE", ids=sorted(set(b_sub)))
            s.execute("""INSERT INTO subscription_events (subscription_id, event_seq)
                         SELECT * FROM unnest(CAST(:sub AS text[]), CAST(:seq AS bigint[])) ON CONFLICT DO NOTHING""",
                      sub=b_sub, seq=b_seq)
            for sub_id in sorted(set(b_sub)):
                _trim_buffer(s, sub_id)
                s.execute("SELECT pg_notify(:ch, :sub)", ch=SUBSCRIPTIONS_CHANNEL, sub=sub_id)
        s.execute("UPDATE events SET dispatched_at = :now WHERE seq = ANY(:seqs)",
                  now=datetime.now(timezone.utc), seqs=[e["seq"] for e in events])
    return len(events)


def _trim_buffer(s, sub_id: str) -> None:
    """buffer_size bounds the unacknowledged events: the oldest are dropped and counted (decision)."""
    dropped = s.scalar("""WITH cap AS (SELECT buffer_size FROM subscriptions WHERE id = :id),
                               old AS (SELECT event_seq FROM subscription_events WHERE subscription_id = :id
                                        ORDER BY event_seq DESC OFFSET (SELECT buffer_size FROM cap)),
                               gone AS (DELETE FROM subscription_events WHERE subscription_id = :id
                                         AND event_seq IN (SELECT event_seq FROM old) RETURNING 1)
                          SELECT count(*) FROM gone""", id=sub_id)
    if dropped:
        s.execute("UPDATE subscriptions SET dropped_events = dropped_events + :n WHERE id = :id", n=dropped, id=sub_id)
