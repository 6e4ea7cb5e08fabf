"""Building audit entries from the current request (flask.g and request), and denial entries.

Views call `entry_for_request(action, ...)` and pass the entry to `audit.record(session,
entry)` inside their transaction (writes) or read statement (reads). The pipeline records a
refused or failed request itself (any 4xx or 5xx of an audited category) when the view wrote no
entry for that outcome, so views never need to audit their own refusals and failures; a
failure whose transaction rolled back its entry gets one of its own, in a separate transaction.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from flask import g

from ..audit import AuditEntry, record, record_now
from ..audit.entry import new_entry_id
from ..errors import ScaiVaultError
from .http import current_request

log = logging.getLogger("scaivault.audit")

# The action a denied request of each category is recorded under (categories of
# scaivault.ratelimit.CATEGORIES); categories absent here touch no tenant data worth auditing.
DENIAL_ACTIONS: dict[str, str] = {
    "secrets:read": "read",
    "secrets:batch": "read",
    "secrets:write": "write",
    "secrets:delete": "delete",
    "secrets:list": "list",
    "secrets:batch_metadata": "list",
    "pki:issue": "pki_issue",
    "pki:admin": "pki_ca_create",
    "acme:order": "acme_order",
    "dynamic:generate": "dynamic_generate",
    "dynamic:admin": "dynamic_config",
    "leases": "dynamic_renew",
    "audit:read": "audit_query",
    "audit:export": "export_created",
    "webhooks": "webhook_admin",
    "subscriptions": "subscription_admin",
    "subscriptions:poll": "subscription_event",
}


# refusals by policy evaluation (not scope): these are policy.violation events (issue 11)
VIOLATION_CODES = frozenset({"access_denied", "ip_not_allowed", "mfa_required", "time_window_violation"})


def denial_action(category: str | None) -> str | None:
    """The action a refused request of `category` is recorded under (None: not audited)."""
    if category == "policies":
        request = current_request()
        binding = "/bindings" in request.path
        return {("POST", True): "policy_bind", ("DELETE", True): "policy_unbind", ("POST", False): "policy_create",
                ("PUT", False): "policy_update", ("PATCH", False): "policy_update",
                ("DELETE", False): "policy_delete"}.get((request.method, binding), "policy_read")
    return DENIAL_ACTIONS.get(category or "")


def entry_for_request(action: str, *, secret_path: str | None = None, success: bool = True,
                      extra: dict[str, Any] | None = None) -> AuditEntry:
    """An AuditEntry for `action` filled from the current request: who, tenant, where from, how long."""
    state = g._get_current_object()     # one context lookup, not one per attribute
    identity = state.get("identity")
    tenant = state.get("tenant")
    started = state.get("started")
    request = current_request()
    duration_ms = int((time.perf_counter() - started) * 1000) if started is not None else None
    entry = AuditEntry(
        action=action,
        tenant_id=tenant.tenant_id if tenant is not None else getattr(identity, "tenant_id", None),
        partner_id=(tenant.partner_id if tenant is not None else None) or getattr(identity, "partner_id", None),
        identity_type=getattr(identity, "identity_type", None) or "anonymous",
        identity_id=getattr(identity, "identity_id", None),
        secret_path=secret_path,
        source_ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        success=success,
        duration_ms=duration_ms,
        request_id=state.get("request_id"),
        extra_data=dict(extra or {}),
    )
    if identity is not None:
        # the name (identity_id) can be shared or change; the actor is the immutable sub + home tenant
        entry.extra_data.setdefault("actor", identity.principal)
    if state.get("client_request_id"):   # the caller's own correlation id, apart from the server's request_id
        entry.extra_data.setdefault("client_request_id", state.client_request_id)
    acting_for = getattr(identity, "acting_for", None)
    if acting_for:  # an exchanged token: who it acts for is part of the record
        entry.extra_data.setdefault("acting_for", acting_for)
    if getattr(identity, "token_kind", None) == "pat" and identity.token_id:
        entry.extra_data.setdefault("token_id", identity.token_id)   # the PAT's id, never its secret
    state.audit_entry_built = True
    if not success:
        state.audit_failure_built = True
    return entry


def record_read(runtime, action: str, *, tenant_id: str | None = None, partner_id: str | None = None,
                extra: dict[str, Any] | None = None) -> None:
    """Audit a read of authorisation or identity data (policies, the identity cache) before it is answered.

    Fail-closed like every read: if the entry cannot be written the request fails (503) and
    nothing is returned. `tenant_id` names the tenant whose data was read, when not the request's.
    """
    entry = entry_for_request(action, extra=extra)
    if tenant_id is not None:
        entry.tenant_id, entry.partner_id = tenant_id, partner_id
    if entry.tenant_id is None:
        entry.extra_data.setdefault("scope", "platform")
    record_now(runtime, entry)


def record_denial(runtime, category: str | None, error: ScaiVaultError, secret_path: str | None = None) -> None:
    """Audit a refused or failed request (success=false, the error code) unless it has its entry.

    A request that already built a failure entry has one. One that built a success entry and
    then failed with a 4xx committed it (or never needed it); with a 5xx its transaction most
    likely rolled back (audit insert refused, connection lost, commit failed), so the failure
    is recorded here on a connection of its own. Only requests acting in a known tenant are
    recorded; an audit failure here is logged, not raised: the caller is refused either way.
    An attempt to act in another tenant is always recorded, naming the target, in the caller's
    home tenant and in the targeted tenant (F12).
    """
    details = error.details or {}
    cross_tenant = error.status == 403 and details.get("reason") == "cross_tenant"
    action = denial_action(category) or ("cross_tenant_attempt" if cross_tenant else None)
    if action is None or g.get("audit_failure_built"):
        return
    if g.get("audit_entry_built") and error.status < 500:
        return
    if g.get("tenant") is None and getattr(g.get("identity"), "tenant_id", None) is None and not cross_tenant:
        return
    suppressed = 0
    if error.status == 429:
        # a flood of refused requests must not become a flood of audit inserts: one entry per
        # identity and category a minute per process, counting the refusals it stands for
        record_it, suppressed = _rate_refusals.note((getattr(g.get("identity"), "principal", None), category))
        if not record_it:
            return
    request = current_request()
    if secret_path is None:
        secret_path = g.get("refused_path") or (request.view_args or {}).get("path")
    extra = {"error": error.code, "method": request.method}
    if suppressed:
        extra["refusals_not_recorded_since_last"] = suppressed
    target = details.get("tenant_id") if cross_tenant else None
    if target:
        extra["target_tenant_id"] = target
    entry = entry_for_request(action, secret_path=secret_path, success=False, extra=extra)
    entries = [entry] if entry.tenant_id else []
    target_row = runtime.authenticator.tenant(target) if target else None
    if target_row is not None and target != entry.tenant_id:
        copy = dataclasses.replace(entry, id=new_entry_id(), tenant_id=target, partner_id=target_row["partner_id"],
                                   extra_data={**entry.extra_data, "home_tenant_id": entry.tenant_id})
        entries.append(copy)
    violation = error.status == 403 and error.code in VIOLATION_CODES and secret_path is not None
    for item in entries:
        try:
            if violation and item is entry:
                from ..lifecycle.hooks import policy_violation

                with runtime.db.transaction() as session:     # the violation event commits with its audit entry
                    record(session, item)
                    policy_violation(session, item, secret_path, error)
            else:
                record_now(runtime, item)
        except ScaiVaultError:
            log.warning("a refused or failed request could not be audited",
                        extra={"request_id": g.get("request_id"), "error": error.code})


record_failure = record_denial


class RefusalSampler:
    """Lets the first refusal per key through each window and counts the ones it holds back."""

    def __init__(self, window_seconds: float = 60.0, max_keys: int = 10_000):
        self.window = window_seconds
        self.max_keys = max_keys
        self._seen: dict[Any, tuple[float, int]] = {}
        self._lock = threading.Lock()   # guards the dict only: no I/O under it

    def note(self, key: Any) -> tuple[bool, int]:
        """(record this one?, how many were held back since the last recorded one)."""
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.window:
                self._seen[key] = (last, held + 1)
                return False, 0
            if len(self._seen) >= self.max_keys:
                self._seen.clear()
            self._seen[key] = (now, 0)
            return True, held


_rate_refusals = RefusalSampler()
