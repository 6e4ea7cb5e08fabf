"""Authorisation of secret operations: token scope AND (admin role OR policy grant).

Admin roles grant every permission within their reach (super_admin: everywhere;
partner_admin: every tenant of its partner and the partner's own secrets; tenant_admin:
its own tenant, and reading its partner's secrets); they are not subject to policies.
Everyone else needs a policy rule. Tenant-scope policies apply in their tenant only;
partner-scope policies apply in every tenant of the partner and to partner secrets.
Partner secrets are written only by partner admins (spec/10 section 4.3).
"""
from __future__ import annotations

from ..auth.identity import Identity, TenantContext
from .cache import PolicyCache
from .engine import ALLOW_ALL, Decision, PolicySet, compile_policies
from .rules import RequestContext

NO_POLICIES = compile_policies([])


def request_context(identity: Identity, source_ip: str | None) -> RequestContext:
    return RequestContext(source_ip=source_ip, mfa_verified_at=identity.mfa_verified_at)


class AccessControl:
    """Decides secret permissions for a caller in a tenant (or on its partner's secrets)."""

    def __init__(self, cache: PolicyCache):
        self.cache = cache

    @staticmethod
    def admin_over_tenant(identity: Identity, tenant: TenantContext) -> bool:
        return identity.admin_over(tenant.tenant_id, tenant.partner_id)

    @staticmethod
    def admin_over_partner(identity: Identity, partner_id: str | None) -> bool:
        return bool(partner_id) and identity.admin_over(None, partner_id)

    @staticmethod
    def _ids(identity: Identity) -> tuple[str, ...]:
        return tuple(sorted({identity.identity_id, *identity.groups}))

    def tenant_policies(self, identity: Identity, tenant: TenantContext) -> PolicySet | None:
        """None when an admin role grants everything, else the caller's compiled policies.

        Binding names (`user:<email>`, `sa:<name>`, `group:<name>`) resolve within the caller's
        own tenant, and for partner-scope policies within its own partner: a visitor from
        another tenant who happens to carry the same name is not the one the binding means.
        """
        if self.admin_over_tenant(identity, tenant):
            return None
        if identity.tenant_id == tenant.tenant_id:
            return self.cache.get(tenant.tenant_id, tenant.partner_id, self._ids(identity))
        if identity.partner_id and identity.partner_id == tenant.partner_id:
            return self.cache.get(None, tenant.partner_id, self._ids(identity))
        return NO_POLICIES

    def partner_policies(self, identity: Identity, tenant: TenantContext, permission: str) -> PolicySet | None:
        """For partner secrets: None when a role grants `permission`, else partner-scope policies."""
        if self.admin_over_partner(identity, tenant.partner_id):
            return None
        if permission in ("read", "list") and self.admin_over_tenant(identity, tenant):
            return None
        if not identity.partner_id or identity.partner_id != tenant.partner_id:
            return NO_POLICIES
        return self.cache.get(None, tenant.partner_id, self._ids(identity))

    def decide(self, identity: Identity, tenant: TenantContext, path: str, permission: str,
               ctx: RequestContext, *, partner_secret: bool = False) -> Decision:
        """The decision for one path; the token scope was already checked by the pipeline."""
        if partner_secret:
            if permission not in ("read", "list") and not self.admin_over_partner(identity, tenant.partner_id):
                return Decision(False, code="access_denied", via="role",
                                message="partner secrets are written and deleted by partner admins only")
            policies = self.partner_policies(identity, tenant, permission)
        else:
            policies = self.tenant_policies(identity, tenant)
        if policies is None:
            return ALLOW_ALL
        return policies.decide(path, permission, ctx)
