"""The one hook the secret store calls inside its write transactions (and after reads).

Everything the lifecycle adds to a change rides the change's own transaction: the events
it causes (outbox), the secret-policy link, the rotation clock (attach, detach, and a write
that completes a due rotation). The store keeps its SQL; this module adds statements only
when there is something to do, plus one event insert per write.
"""
from __future__ import annotations

import logging
from typing import Any

from ..errors import ScaiVaultError
from ..events.outbox import emit
from ..snapshot import PeriodicSnapshot
from .clock import CLOCK

log = logging.getLogger("scaivault.lifecycle")


def secret_changed(s, change: str, owner, path: str, origin, *, before: dict | None, after: dict | None,
                   req: Any = None, info: dict | None = None) -> dict:
    """Called by SecretStore inside the transaction of `change` (write | metadata | delete).

    `before`/`after` are the secret rows around the change; `req` the WriteRequest of a write;
    `info` change details (delete: version_count, permanent, recoverable_until). Returns view
    fields to merge into the store's answer.
    """
    from ..services import rotation

    view: dict[str, Any] = {}
    if change == "delete":
        data = {"version_count": info["version_count"], "deleted_by": origin.identity_id,
                "permanent": info["permanent"]}
        if not info["permanent"]:
            data["recoverable_until"] = info.get("recoverable_until")
        emit(s, "secret.deleted", origin, data, path)
        return view
    assert after is not None and before is not None
    recipe_id = getattr(req, "secret_policy_id", None) if req is not None else None
    if recipe_id is not None and recipe_id != before.get("secret_policy_id"):
        if s.scalar("SELECT 1 FROM secret_policies WHERE id = :id AND tenant_id IS NOT DISTINCT FROM :tenant",
                    id=recipe_id, tenant=owner.tenant_id) is None:
            raise ScaiVaultError("secret_policy_not_found", "no such secret policy",
                                 details={"secret_policy_id": recipe_id[:64]})
        s.execute("UPDATE secrets SET secret_policy_id = :sp WHERE id = :id", sp=recipe_id, id=after["id"])
    view["secret_policy_id"] = recipe_id or before.get("secret_policy_id")
    if after["rotation_policy_id"] and after["rotation_policy_id"] != before.get("rotation_policy_id") and s.scalar(
            "SELECT 1 FROM rotation_policies WHERE id = :id AND tenant_id IS NOT DISTINCT FROM :tenant",
            id=after["rotation_policy_id"], tenant=owner.tenant_id) is None:
        raise ScaiVaultError("rotation_policy_not_found", "no such rotation policy",
                             details={"rotation_policy_id": after["rotation_policy_id"][:64]})
    if after["rotation_policy_id"] != before.get("rotation_policy_id") or (
            before.get("current_version") == 0 and after["rotation_policy_id"]):
        rotation.relink(s, after, after["rotation_policy_id"], CLOCK.now())
    if change != "write":
        return view
    old_version, new_version = before["current_version"], after["current_version"]
    rotated = rotation.on_version_written(s, after, path, old_version, new_version,
                                          getattr(req, "rotation", None), origin, CLOCK.now())
    if old_version == 0:
        emit(s, "secret.created", origin, {
            "version": new_version, "secret_type": after["secret_type"], "created_by": origin.identity_id,
            "tags": (after["metadata"] or {}).get("tags") or [], "expires_at": _iso(after["expires_at"])}, path)
    else:
        emit(s, "secret.updated", origin, {"old_version": old_version, "new_version": new_version,
                                           "updated_by": origin.identity_id, "is_rotation": rotated}, path)
    return view


def plain_write_events(path: str, old_version: int, new_version: int, origin, *, secret_type: str,
                       tags: list | None, expires_at) -> list[dict]:
    """The events of a plain write, as envelopes for `sv_secret_events` (a one-statement write path).

    Only for writes the hook has nothing else to do for: no rotation policy attached or changing,
    no secret_policy_id given, not a rotation (those take the transaction that calls secret_changed).
    """
    from ..events.outbox import envelope

    if old_version == 0:
        return [envelope("secret.created", origin, {
            "version": new_version, "secret_type": secret_type, "created_by": origin.identity_id,
            "tags": tags or [], "expires_at": _iso(expires_at)}, path)]
    return [envelope("secret.updated", origin, {"old_version": old_version, "new_version": new_version,
                                                "updated_by": origin.identity_id, "is_rotation": False}, path)]


def policy_changed(s, event_type: str, origin, data: dict) -> None:
    """Called by PolicyService inside the transaction of an access-policy or binding change."""
    emit(s, event_type, origin, {k: v for k, v in data.items() if k != "acting_for" and k != "token_id"})


def certificate_changed(s, entry) -> None:
    """Called where PKI and ACME record a certificate change whose audit entry names its event
    (`extra_data.event`): `certificate.issued`, `.renewed` or `.revoked`, in that transaction."""
    event = entry.extra_data.get("event")
    if entry.success and event in ("certificate.issued", "certificate.renewed", "certificate.revoked") \
            and not entry.extra_data.get("already_revoked"):
        data = {k: v for k, v in entry.extra_data.items() if k not in ("event", "acting_for", "token_id", "actor")}
        emit(s, event, entry, data, entry.secret_path)


LEASE_EVENTS = {"dynamic_generate": "lease.created", "dynamic_renew": "lease.renewed", "dynamic_revoke": "lease.revoked"}


def lease_changed(s, entry) -> None:
    """Called where dynamic credentials record a lease change: `lease.created|renewed|revoked` (decided
    names; spec/30 leaves them open) in the same transaction; a failed revocation emits nothing."""
    event = LEASE_EVENTS.get(entry.action)
    if event and entry.success:
        data = {k: v for k, v in entry.extra_data.items() if k not in ("username", "acting_for", "token_id", "actor")}
        emit(s, event, entry, data, entry.secret_path)


def policy_violation(s, origin, path: str | None, error) -> None:
    """Called with a denial's audit entry, in its statement's session: `policy.violation`."""
    emit(s, "policy.violation", origin, {"code": error.code, "permission": PERMISSIONS.get(origin.action, origin.action),
                                          "action": origin.action}, path)


PERMISSIONS = {"read": "read", "write": "write", "delete": "delete", "list": "list", "rotate": "rotate"}


def _iso(ts) -> str | None:
    from ..services.policies import iso

    return iso(ts)


# ------------------------------------------------------------------ secret.accessed, off unless wanted
def _access_listener_tenants(db) -> frozenset[str]:
    rows = db.query("""SELECT DISTINCT tenant_id FROM webhooks
                        WHERE enabled AND (events ? 'secret.accessed' OR events ? 'secret.*' OR events ? '*')
                       UNION SELECT DISTINCT tenant_id FROM subscriptions
                        WHERE status = 'active'
                          AND (events ? 'secret.accessed' OR events ? 'secret.*' OR events ? '*')""")
    return frozenset(r["tenant_id"] for r in rows)


class AccessListeners:
    """Which tenants have a webhook or subscription for `secret.accessed`: a read of a tenant
    nobody listens to costs one set lookup (refreshed every 5 s, scaivault.snapshot). Whether a
    write's events have any consumer is decided in its own statement (migration 0161)."""

    def __init__(self) -> None:
        self._tenants = PeriodicSnapshot("access listeners", _access_listener_tenants, frozenset())

    def wanted(self, db, tenant_id: str | None) -> bool:
        return tenant_id in self._tenants.get(db)

    def invalidate(self) -> None:
        self._tenants.expire()


ACCESS_LISTENERS = AccessListeners()


def secret_read(db, owner, path: str, version: int, audit) -> None:
    """After an audited value read: `secret.accessed` when someone in the tenant listens for it."""
    if owner.tenant_id is None or not ACCESS_LISTENERS.wanted(db, owner.tenant_id):
        return
    origin = audit("read", secret_path=path)
    try:
        with db.session() as s:
            emit(s, "secret.accessed", origin, {"version": version, "accessed_by": origin.identity_id}, path)
    except Exception as exc:   # the read was audited and answered; the notification is best effort
        log.warning("secret.accessed not recorded", extra={"error": type(exc).__name__})
