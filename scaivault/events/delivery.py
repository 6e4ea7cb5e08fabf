"""The webhook delivery worker: claims due deliveries, signs, POSTs, records, retries.

At-least-once: a claim commits a lease (`locked_until`) and the attempt count before the
call; a worker killed mid-call leaves the row to be claimed again once the lease lapses, so
the receiver may see the same event_id twice but never loses it. Attempts back off
exponentially with jitter up to `max_attempts`; a webhook failing for long enough is disabled
(status `disabled`, event `webhook.disabled`). Every attempt is audited (`webhook_delivery`).
Network calls run in a small thread pool (greenlets under gevent) with no lock held.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..audit import AuditEntry, record
from ..crypto import SealContext, register_sealed_column
from .outbound import Outcome, post
from .outbox import SystemOrigin, emit
from .signing import signature

log = logging.getLogger("scaivault.webhooks")

register_sealed_column("webhooks", "sealed_secret")
register_sealed_column("webhooks", "sealed_previous_secret")

USER_AGENT = "ScaiVault-Webhook/1.0"
DELIVERIES_CHANNEL = "scaivault_deliveries"


def secret_context(webhook: dict, version: int) -> SealContext:
    return SealContext(webhook["partner_id"] or "", webhook["tenant_id"], "webhook_secret", webhook["id"], version)


@dataclass
class DeliveryPolicy:
    """Retry, timeout and auto-disable rules (spec/30 open point 15; see docs/decisions.md)."""

    max_attempts: int = 8
    backoff_base: float = 10.0          # seconds; attempt n waits base * 2^(n-1), jittered to 50-100%
    backoff_max: float = 3600.0
    timeout: float = 10.0               # per attempt (read); connect is bounded separately
    lease: float = 60.0                 # a claimed delivery is re-claimable after this
    disable_after_failures: int = 20    # consecutive failed attempts ...
    disable_after_seconds: float = 24 * 3600.0   # ... spanning at least this long
    batch: int = 32
    concurrency: int = 8                # attempts in flight per process
    tenant_inflight: int = 4            # ... of which one tenant may hold at most this many (across instances)

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1)) * random.uniform(0.5, 1.0)


def delivery_view(row: dict) -> dict:
    from ..services.policies import iso

    return {"id": row["id"], "webhook_id": row["webhook_id"], "event_id": row["event_id"],
            "event_type": row["event_type"], "timestamp": iso(row["created_at"]), "status": row["status"],
            "attempts": row["attempts"], "response_code": row["response_code"], "duration_ms": row["duration_ms"],
            "error": row["error"], "last_attempt_at": iso(row["last_attempt_at"]),
            "next_attempt_at": iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
            "completed_at": iso(row["completed_at"]), "redelivery_of": row["redelivery_of"]}


class DeliveryWorker:
    """Claims and performs due deliveries; `run_once` is one pass, `deliver_now` one synchronous attempt."""

    def __init__(self, db, keyring, settings, policy: DeliveryPolicy | None = None, *, subscription_gate=None):
        self.db = db
        self.keyring = keyring
        self.settings = settings
        self.policy = policy or DeliveryPolicy()
        self._pool = ThreadPoolExecutor(max_workers=self.policy.concurrency, thread_name_prefix="webhook")
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.idle = threading.Event()          # set whenever an attempt finishes (the pump loop waits on it too)
        # (delivery row, webhook row, event row) -> False to skip: a subscription's owner may no longer read the path
        self.subscription_gate = subscription_gate

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    # ---------------------------------------------------------------- claiming
    def claim(self, limit: int | None = None) -> list[dict]:
        """Lease due deliveries; a tenant never gets more than `tenant_inflight` attempts in flight, so one
        tenant's slow receivers cannot occupy every slot (invariant 12)."""
        return self.db.query(
            """UPDATE webhook_deliveries d SET locked_until = now() + make_interval(secs => :lease),
                      attempts = d.attempts + 1, last_attempt_at = now()
                WHERE d.id IN (
                    SELECT id FROM webhook_deliveries WHERE id IN (
                        SELECT id FROM (
                            SELECT q.id, row_number() OVER (PARTITION BY q.tenant_id ORDER BY q.next_attempt_at)
                                   + COALESCE(f.n, 0) AS rank
                              FROM webhook_deliveries q
                              LEFT JOIN (SELECT tenant_id, count(*) AS n FROM webhook_deliveries
                                          WHERE status = 'pending' AND locked_until > now() GROUP BY tenant_id) f
                                     ON f.tenant_id = q.tenant_id
                             WHERE q.status = 'pending' AND q.next_attempt_at <= now()
                               AND (q.locked_until IS NULL OR q.locked_until < now())) ranked
                         WHERE rank <= :per_tenant)
                      -- re-checked on the locked row (a claim committed meanwhile makes it not due): the
                      -- conditions above sit in subqueries, which PostgreSQL does not re-evaluate on a lock wait
                      AND status = 'pending' AND next_attempt_at <= now()
                      AND (locked_until IS NULL OR locked_until < now())
                     ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)
            RETURNING d.*""", lease=self.policy.lease, n=limit or self.policy.batch,
            per_tenant=self.policy.tenant_inflight)

    def free_slots(self) -> int:
        with self._inflight_lock:
            return self.policy.concurrency - self._inflight

    def run_once(self, wait: bool = True) -> int:
        """Claim as many due deliveries as there are free slots and start them; returns how many.

        wait=True (tests, stand-alone passes) returns once they are done; the pump's loop does not
        wait, so a slow receiver holds one slot, never the loop.
        """
        free = self.free_slots()
        if free <= 0:
            return 0
        claimed = self.claim(min(free, self.policy.batch))
        if not claimed:
            return 0
        hooks = {r["id"]: r for r in self.db.query("SELECT * FROM webhooks WHERE id = ANY(:ids)",
                                                  ids=list({d["webhook_id"] for d in claimed}))}
        events = {r["seq"]: r for r in self.db.query("SELECT seq, id, tenant_id, event_type, path, body FROM events "
                                                    "WHERE seq = ANY(:s)", s=[d["event_seq"] for d in claimed])}
        with self._inflight_lock:
            self._inflight += len(claimed)
        futures = [self._pool.submit(self._slot, d, hooks.get(d["webhook_id"]), events.get(d["event_seq"]))
                   for d in claimed]
        if wait:
            for future in futures:
                future.result()
        return len(claimed)

    def _slot(self, d: dict, hook: dict | None, event: dict | None) -> None:
        try:
            self._attempt(d, hook, event)
        except Exception as exc:   # a failed bookkeeping step leaves the lease to expire: retried later
            log.warning("delivery attempt not recorded", extra={"error": type(exc).__name__})
        finally:
            with self._inflight_lock:
                self._inflight -= 1
            self.idle.set()

    def deliver_now(self, delivery_id: str) -> dict:
        """Attempt one delivery synchronously (the `test` endpoint); returns the updated row."""
        rows = self.db.query("""UPDATE webhook_deliveries SET locked_until = now() + make_interval(secs => :lease),
                                       attempts = attempts + 1, last_attempt_at = now()
                                 WHERE id = :id RETURNING *""", id=delivery_id, lease=self.policy.lease)
        d = rows[0]
        hook = self.db.one("SELECT * FROM webhooks WHERE id = :id", id=d["webhook_id"])
        event = self.db.one("SELECT seq, id, tenant_id, event_type, path, body FROM events WHERE seq = :s", s=d["event_seq"])
        self._attempt(d, hook, event, final=True)
        return self.db.one("SELECT * FROM webhook_deliveries WHERE id = :id", id=delivery_id)

    # ---------------------------------------------------------------- one attempt
    def signing_secret(self, hook: dict) -> str:
        return self.keyring.open(secret_context(hook, hook["secret_version"]), bytes(hook["sealed_secret"])).decode()

    def headers(self, hook: dict, event: dict, body: bytes, delivery_id: str) -> dict[str, str]:
        timestamp = int(time.time())          # fresh on every attempt: receivers allow 5 minutes of skew
        return {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                "X-ScaiVault-Event-Id": event["id"], "X-ScaiVault-Event-Type": event["event_type"],
                "X-ScaiVault-Timestamp": str(timestamp), "X-ScaiVault-Delivery-Id": delivery_id,
                "X-ScaiVault-Signature": signature(self.signing_secret(hook), timestamp, body)}

    def _attempt(self, d: dict, hook: dict | None, event: dict | None, final: bool = False) -> None:
        if hook is None or event is None:
            self._finish(d, hook, Outcome(None, 0, "webhook_deleted"), give_up=True)
            return
        if not hook["enabled"]:
            self._finish(d, hook, Outcome(None, 0, "webhook_disabled"), give_up=True, count_failure=False)
            return
        if hook["subscription_id"] and self.subscription_gate is not None and not self.subscription_gate(hook, event):
            self._finish(d, hook, Outcome(None, 0, "not_readable_by_subscriber"), give_up=True,
                         count_failure=False, status="skipped")
            return
        body = event["body"].encode("utf-8")
        outcome = post(hook["url"], body, self.headers(hook, event, body, d["id"]), self.settings, self.policy.timeout)
        self._finish(d, hook, outcome, give_up=final or d["attempts"] >= self.policy.max_attempts)

    def _finish(self, d: dict, hook: dict | None, outcome: Outcome, *, give_up: bool, count_failure: bool = True,
                status: str | None = None) -> None:
        now = datetime.now(timezone.utc)
        if outcome.ok:
            status, next_at = "success", None
        elif give_up:
            status, next_at = status or "failed", None
        else:
            status, next_at = "pending", now + timedelta(seconds=self.policy.backoff(d["attempts"]))
        with self.db.transaction() as s:
            s.execute("""UPDATE webhook_deliveries SET status = :status, response_code = :code, error = :error,
                                duration_ms = :ms, locked_until = NULL,
                                next_attempt_at = COALESCE(CAST(:next AS timestamptz), next_attempt_at),
                                completed_at = CASE WHEN :status = 'pending' THEN NULL ELSE now() END
                          WHERE id = :id""",
                      id=d["id"], status=status, code=outcome.status, error=outcome.error, ms=outcome.duration_ms,
                      next=next_at)
            if hook is None:
                return
            record(s, AuditEntry(action="webhook_delivery", tenant_id=hook["tenant_id"], partner_id=hook["partner_id"] or None,
                                 identity_type="system", identity_id="system:webhook-delivery",
                                 success=outcome.ok, duration_ms=outcome.duration_ms,
                                 extra_data={"webhook_id": hook["id"], "delivery_id": d["id"], "event_id": d["event_id"],
                                             "attempt": d["attempts"], "response_code": outcome.status,
                                             **({"error": outcome.error} if outcome.error else {})}))
            if outcome.ok:
                # only a recovering webhook's row is written: every success rewriting it would make
                # concurrent deliveries of one webhook queue on its row lock
                s.execute("""UPDATE webhooks SET consecutive_failures = 0, failing_since = NULL, status = 'healthy'
                              WHERE id = :id AND status = 'failing'""", id=hook["id"])
            elif count_failure:
                self._count_failure(s, hook, now)

    def _count_failure(self, s, hook: dict, now: datetime) -> None:
        row = s.one("""UPDATE webhooks SET consecutive_failures = consecutive_failures + 1,
                              failing_since = COALESCE(failing_since, :now), status = 'failing'
                        WHERE id = :id AND enabled RETURNING consecutive_failures, failing_since""",
                    id=hook["id"], now=now)
        if row is None:
            return
        if (row["consecutive_failures"] >= self.policy.disable_after_failures
                and (now - row["failing_since"]).total_seconds() >= self.policy.disable_after_seconds):
            s.execute("""UPDATE webhooks SET enabled = false, status = 'disabled',
                                disabled_reason = 'sustained delivery failure' WHERE id = :id""", id=hook["id"])
            # a push subscription's channel: the subscription says so too (a PATCH of its delivery revives it)
            s.execute("UPDATE subscriptions SET status = 'disabled', updated_at = now() WHERE webhook_id = :id",
                      id=hook["id"])
            emit(s, "webhook.disabled", SystemOrigin(hook["tenant_id"], hook["partner_id"] or None, "webhook-delivery"),
                 {"webhook_id": hook["id"], "name": hook["name"], "reason": "sustained delivery failure",
                  "consecutive_failures": row["consecutive_failures"],
                  "failing_since": row["failing_since"].astimezone(timezone.utc).isoformat().replace("+00:00", "Z")})
            log.warning("webhook disabled after sustained failures", extra={"webhook_id": hook["id"]})
