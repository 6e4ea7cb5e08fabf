"""Admin roles (spec/10 section 3.3): ScaiVault's role store, its change rules, role reach.

A grant is (role, partner_id, tenant_id): super_admin reaches the platform, partner_admin
one partner and its tenants, tenant_admin one tenant.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..db import Session
from ..errors import ScaiVaultError
from .identity import ADMIN_ROLES, Identity, RoleGrant, principal_key

log = logging.getLogger("scaivault.auth.roles")

ROLE_DESCRIPTIONS = {
    "super_admin": ("platform", "every permission on the whole platform; the only role that grants super_admin"),
    "partner_admin": ("partner", "every permission in one partner and all its tenants; may change role assignments"),
    "tenant_admin": ("tenant", "every permission in one tenant"),
}


def grants_from_claims(claims: dict, tenant_id: str | None, partner_id: str | None) -> list[RoleGrant]:
    """The admin tier named by the token's `role` claim, with the reach its claims give it."""
    role = claims.get("role")
    if role == "super_admin":
        return [RoleGrant("super_admin", None, None)]
    if role == "partner_admin" and partner_id:
        return [RoleGrant("partner_admin", partner_id, None)]
    if role == "tenant_admin" and tenant_id:
        return [RoleGrant("tenant_admin", partner_id, tenant_id)]
    return []


def stored_grants(s: Session, principal: str) -> list[RoleGrant]:
    """The unexpired stored roles of one principal (`<tenant>/<sub>`, see principal_key)."""
    rows = s.query("""SELECT role, partner_id, tenant_id FROM identity_role_assignments
                      WHERE principal = :p AND (expires_at IS NULL OR expires_at > now()) ORDER BY role""",
                   p=principal)
    return [RoleGrant(r["role"], r["partner_id"], r["tenant_id"]) for r in rows]


def stored_assignments(s: Session, principal: str) -> list[dict]:
    return s.query("""SELECT role, partner_id, tenant_id, source, granted_by, granted_at, expires_at
                      FROM identity_role_assignments WHERE principal = :p ORDER BY role""", p=principal)


@dataclass(frozen=True)
class RoleTarget:
    """Whose roles change (a cached user: sub and tenant), and where they live (the reach of the roles)."""

    identity_id: str          # the user's binding name, recorded with the grant for display
    subject: str
    tenant_id: str | None
    partner_id: str | None

    @property
    def principal(self) -> str:
        return principal_key(self.subject, self.tenant_id)


def replace_roles(s: Session, caller: Identity, target: RoleTarget, roles: list[str]) -> list[dict]:
    """Replace the target's stored roles, enforcing the spec/10 3.3 rules; returns the new rows."""
    wanted = list(dict.fromkeys(roles))
    unknown = [r for r in wanted if r not in ADMIN_ROLES]
    if unknown:
        raise ScaiVaultError("invalid_role", f"unknown role {unknown[0]!r}",
                             details={"allowed_roles": list(ADMIN_ROLES)})
    caller_super = caller.is_super_admin
    caller_partners = {g.partner_id for g in caller.grants if g.role == "partner_admin" and g.partner_id}
    if not caller_super and not caller_partners:
        raise ScaiVaultError("forbidden", "only super_admin or partner_admin may change role assignments")
    if not caller_super and (target.partner_id is None or target.partner_id not in caller_partners):
        raise ScaiVaultError("forbidden", "the user is outside your partner")
    # assignments synced from ScaiKey are ScaiKey's to change; the PUT replaces ScaiVault's own
    current = {r["role"] for r in stored_assignments(s, target.principal) if r["source"] != "scaikey"}
    if "super_admin" in set(wanted) ^ current and not caller_super:
        raise ScaiVaultError("forbidden", "only a super_admin may grant or remove super_admin")
    if target.principal == caller.principal:
        # a role held only through the token's claim is transient: storing it for oneself is
        # self-elevation too (it would outlive the claim), so compare with the stored roles
        held = {g.role for g in stored_grants(s, caller.principal)}
        gained = set(wanted) - held
        if gained:
            raise ScaiVaultError("forbidden", "you may not raise your own privileges",
                                 details={"roles": sorted(gained)})
    if "tenant_admin" in wanted and not target.tenant_id:
        raise ScaiVaultError("invalid_role", "tenant_admin needs a user who belongs to a tenant")
    if "partner_admin" in wanted and not target.partner_id:
        raise ScaiVaultError("invalid_role", "partner_admin needs a user whose tenant belongs to a partner")
    s.execute("DELETE FROM identity_role_assignments WHERE principal = :p AND source <> 'scaikey'",
              p=target.principal)
    for role in wanted:
        s.execute(
            """INSERT INTO identity_role_assignments (principal, identity_id, role, partner_id, tenant_id, source,
                                                      granted_by)
               VALUES (:pr, :i, :r, :p, :t, 'store', :by) ON CONFLICT (principal, role) DO NOTHING""",
            pr=target.principal, i=target.identity_id, r=role,
            p=target.partner_id if role in ("partner_admin", "tenant_admin") else None,
            t=target.tenant_id if role == "tenant_admin" else None, by=caller.principal)
    return stored_assignments(s, target.principal)


BOOTSTRAP_MARKER = "bootstrap_super_admin_promoted:"


def promote_bootstrap_admin(s: Session, target: str, principal: str, identity_id: str) -> bool:
    """Bind BOOTSTRAP_SUPER_ADMIN to the first matching sign-in's principal, once ever; True if this call did.

    The marker is per setting value, not per identity: a second user who later shows the same
    email (another tenant, a renamed account) is never promoted.
    """
    inserted = s.query(
        """INSERT INTO system_state (key, value)
           VALUES (:k, jsonb_build_object('identity_id', CAST(:i AS text), 'principal', CAST(:p AS text), 'at', now()))
           ON CONFLICT (key) DO NOTHING RETURNING key""", k=BOOTSTRAP_MARKER + target.lower(), i=identity_id,
        p=principal)
    if not inserted:
        return False
    s.execute("""INSERT INTO identity_role_assignments (principal, identity_id, role, source, granted_by)
                 VALUES (:p, :i, 'super_admin', 'bootstrap', 'system:bootstrap')
                 ON CONFLICT (principal, role) DO NOTHING""", p=principal, i=identity_id)
    return True


def record_bootstrap_setting(runtime) -> None:
    """Note BOOTSTRAP_SUPER_ADMIN (or that it is off) in system_state at start, for operators and audits."""
    target = runtime.settings.bootstrap_super_admin
    runtime.db.execute(
        """INSERT INTO system_state (key, value) VALUES ('bootstrap_super_admin',
               jsonb_build_object('identity_id', CAST(:i AS text), 'enabled', CAST(:e AS boolean)))
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
           WHERE system_state.value IS DISTINCT FROM EXCLUDED.value""", i=target, e=bool(target))
