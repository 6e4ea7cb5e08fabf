"""Which tenant a request acts in (spec/10 section 4.1) and whether the caller may act there."""
from __future__ import annotations

import re

from ..errors import ScaiVaultError
from .identity import Identity, TenantContext

TENANT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def requested_tenant(path_tenant: str | None, header_tenant: str | None) -> tuple[str | None, str]:
    """(tenant id, source) named by the request itself: path prefix first, then X-Tenant-ID."""
    if path_tenant:
        return path_tenant, "path"
    if header_tenant is not None:
        value = header_tenant.strip()
        if not TENANT_ID_RE.match(value):
            raise ScaiVaultError("invalid_request", "the X-Tenant-ID header is malformed")
        return value, "header"
    return None, "token"


def partner_reach(identity: Identity) -> set[str]:
    """Partners whose tenants the caller may enter: partner_admin grants, PARTNER-scoped service tokens."""
    reach = {g.partner_id for g in identity.grants if g.role == "partner_admin" and g.partner_id}
    if (identity.identity_type == "service_account" and identity.claims.get("app_scope") == "PARTNER"
            and identity.partner_id):
        reach.add(identity.partner_id)
    return reach


def platform_reach(identity: Identity) -> bool:
    """super_admin, or a GLOBAL application's platform token (spec/15 3.4: acts on any tenant)."""
    if identity.is_super_admin:
        return True
    return (identity.identity_type == "service_account" and identity.claims.get("platform_token") is True
            and identity.claims.get("app_scope") == "GLOBAL")


def _inactive(row: dict) -> bool:
    return row["deleted_at"] is not None or (row["status"] or "ACTIVE").upper() != "ACTIVE"


def resolve(identity: Identity, tenant_lookup, path_tenant: str | None, header_tenant: str | None) -> TenantContext:
    """The TenantContext for this request, or tenant_not_found / access_denied.

    Decision: crossing into another tenant is refused with 403 access_denied (details.reason
    `cross_tenant`); only callers with platform reach learn that a tenant does not exist
    (404 tenant_not_found), so no one else can probe for other partners' tenant ids.
    """
    tenant_id, source = requested_tenant(path_tenant, header_tenant)
    if tenant_id is None:
        tenant_id = identity.tenant_id
        if tenant_id is None:
            raise ScaiVaultError("invalid_request", "this request acts in a tenant: name it with /v1/t/{tenant_id}/ "
                                 "or the X-Tenant-ID header", details={"reason": "tenant_required"})
    row = tenant_lookup(tenant_id)
    platform = platform_reach(identity)
    if tenant_id == identity.tenant_id:
        if row is None:  # the home tenant of a valid token always exists (just-in-time), unless a PAT outlived it
            raise ScaiVaultError("tenant_not_found", "the tenant no longer exists", details={"tenant_id": tenant_id})
        if _inactive(row) and not platform:
            raise ScaiVaultError("access_denied", "the tenant is suspended or deleted",
                                 details={"tenant_id": tenant_id, "reason": "tenant_inactive"})
        # the cache is the authority on a tenant's partner; the token's claim is never a stand-in (F2)
        return TenantContext(tenant_id=tenant_id, partner_id=row["partner_id"] or None, source=source)
    if platform:
        if row is None or row["deleted_at"] is not None:
            raise ScaiVaultError("tenant_not_found", "no such tenant", details={"tenant_id": tenant_id})
        return TenantContext(tenant_id=tenant_id, partner_id=row["partner_id"], source=source)
    reach = partner_reach(identity)
    if row is not None and row["partner_id"] in reach and not _inactive(row):
        return TenantContext(tenant_id=tenant_id, partner_id=row["partner_id"], source=source)
    raise ScaiVaultError("access_denied", "you may not act in this tenant",
                         details={"tenant_id": tenant_id, "reason": "cross_tenant"})
