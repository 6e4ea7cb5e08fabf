"""Authentication: bearer token -> Identity; tenant resolution; scope checks."""
from __future__ import annotations

from ..errors import ScaiVaultError
from .identity import Identity, TenantContext


def authenticate_request(runtime, request) -> Identity:
    """Verify the request's bearer token and return the caller's Identity."""
    raise ScaiVaultError("authentication_required", "authentication is not configured yet")


def resolve_tenant(runtime, identity: Identity, request) -> TenantContext:
    """Choose the tenant by path prefix, then X-Tenant-ID, then the token claim."""
    raise ScaiVaultError("tenant_not_found", "tenant resolution is not configured yet")


def require_scope(identity: Identity, scope: str) -> None:
    if not identity.has_scope(scope):
        raise ScaiVaultError("insufficient_scope", f"the token lacks the scope {scope}",
                             details={"required_scope": scope})


__all__ = ["Identity", "TenantContext", "authenticate_request", "resolve_tenant", "require_scope"]
