"""Authentication: bearer token -> Identity; tenant resolution; scope checks."""
from __future__ import annotations

from ..errors import ScaiVaultError
from . import tenancy
from .identity import Identity, RoleGrant, TenantContext


def authenticate_request(runtime, request) -> Identity:
    """Verify the request's bearer token and return the caller's Identity."""
    header = request.headers.get("Authorization")
    if not header:
        raise ScaiVaultError("authentication_required", "an Authorization: Bearer <token> header is required")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > 16384:
        raise ScaiVaultError("authentication_required", "the Authorization header must be `Bearer <token>`")
    return runtime.authenticator.authenticate(token)


def resolve_tenant(runtime, identity: Identity, request) -> TenantContext:
    """Choose the tenant by path prefix, then X-Tenant-ID, then the token claim."""
    return tenancy.resolve(identity, runtime.authenticator.tenant,
                           request.environ.get("scaivault.path_tenant"), request.headers.get("X-Tenant-ID"))


def require_scope(identity: Identity, scope: str) -> None:
    if not identity.has_scope(scope):
        raise ScaiVaultError("insufficient_scope", f"the token lacks the scope {scope}",
                             details={"required_scope": scope})


__all__ = ["Identity", "RoleGrant", "TenantContext", "authenticate_request", "resolve_tenant", "require_scope"]
