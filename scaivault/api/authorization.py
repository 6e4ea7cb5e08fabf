"""What a view needs beyond its scope, declared on `@endpoint(..., authorize=...)` and checked by the pipeline.

Like an operation's capability in Vault's sdk/framework, the declaration is data: the pipeline
runs it after authentication, tenant resolution, rate limiting and the scope check, the
OpenAPI document shows it (`x-authorization`), and tests/test_authorization_declared.py fails
on any authenticated view that declares none. Kinds:

- `identity_only()`: any authenticated caller; the view acts on the caller's own records or
  shows only what is within its reach (whoami, its personal tokens, reach-filtered listings).
- `permission("read")`: a secret permission (role or policy, spec/20) on the secret path in the
  view argument `path` (partner secrets when the view argument `partner` is true);
  `permission("list", each=True)`: the view authorises each path it touches itself (listings, batches).
- `admin()`: an admin role reaching the request's tenant (tenant_admin, partner_admin of its
  partner, super_admin); `admin("partner")`: partner_admin of the tenant's partner or super_admin;
  `admin("platform")`: super_admin (or a GLOBAL platform token).
- `role("super_admin", "partner_admin")`: one of these roles anywhere; the view then limits what
  it touches to the role's reach.
- `reach("tenant_id")`: the tenant in that view argument must be within the caller's reach,
  answered with a uniform 404 otherwise; `reach(None)`: the view names the tenant itself
  (`require_reach(tenant_id)`) once it has looked the object up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import g, request

from ..auth import tenancy
from ..errors import ScaiVaultError
from ..policy.access import request_context
from ..policy.paths import validate_path
from .http import runtime

KINDS = ("identity", "permission", "admin", "role", "reach")
ADMIN_LEVELS = ("tenant", "partner", "platform")


@dataclass(frozen=True)
class Authorization:
    """One endpoint's authorisation requirement (build it with the functions below)."""

    kind: str
    permission: str | None = None
    each: bool = False
    level: str | None = None
    roles: tuple[str, ...] = ()
    arg: str | None = None

    def describe(self) -> dict[str, Any]:
        """The declaration as shown in the OpenAPI document."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("permission", "level", "arg"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.each:
            out["each"] = True
        if self.roles:
            out["roles"] = list(self.roles)
        return out

    def check(self, view_args: dict[str, Any]) -> None:
        """Raise the refusal for the current request (flask.g holds identity and tenant), or return."""
        identity = g.identity
        if self.kind == "identity":
            return
        if self.kind == "permission":
            if self.each:
                return
            require_permission(view_args.get(self.arg or "path"), self.permission, bool(view_args.get("partner")))
            return
        if self.kind == "admin":
            if not admin_allows(self.level or "tenant"):
                raise ScaiVaultError("access_denied", f"this needs an admin role over this {self.level}",
                                     details={"required": f"admin:{self.level}"})
            return
        if self.kind == "role":
            if not identity.roles.intersection(self.roles):
                raise ScaiVaultError("forbidden", f"this operation needs the role {' or '.join(self.roles)}",
                                     details={"required_roles": list(self.roles)})
            return
        if self.kind == "reach":
            if self.arg is not None:
                g.reached_tenant = require_reach(view_args.get(self.arg))
            return
        raise AssertionError(f"unknown authorization kind {self.kind!r}")


def identity_only() -> Authorization:
    return Authorization("identity")


def permission(name: str, *, each: bool = False, arg: str = "path") -> Authorization:
    if name not in ("read", "write", "delete", "list", "rotate", "admin"):
        raise ValueError(f"unknown permission {name!r}")
    return Authorization("permission", permission=name, each=each, arg=None if each else arg)


def admin(level: str = "tenant") -> Authorization:
    if level not in ADMIN_LEVELS:
        raise ValueError(f"admin level must be one of {ADMIN_LEVELS}")
    return Authorization("admin", level=level)


def role(*roles: str) -> Authorization:
    if not roles:
        raise ValueError("role() needs at least one role")
    return Authorization("role", roles=tuple(roles))


def reach(arg: str | None = "tenant_id") -> Authorization:
    return Authorization("reach", arg=arg)


def require_permission(path, permission_name: str, partner: bool = False) -> None:
    """Role or policy must grant `permission_name` on the secret `path` in the request's tenant, else its refusal.

    Also what a view hands a service for a second permission the operation turns out to need
    (a write that lowers retention needs `delete` as well: issue 9, F11).
    """
    validate_path(path)
    identity = g.identity
    decision = runtime().access.decide(identity, g.tenant, path, permission_name,
                                       request_context(identity, request.remote_addr), partner_secret=partner)
    if not decision.allowed:
        raise decision.error(path)


def admin_allows(level: str) -> bool:
    """Does the caller hold an admin role over the request's tenant / its partner / the platform?"""
    identity, tenant = g.identity, g.get("tenant")
    if level == "platform":
        return tenancy.platform_reach(identity)
    if tenant is None:
        return False
    if level == "partner":
        return bool(tenant.partner_id) and identity.admin_over(None, tenant.partner_id)
    return identity.admin_over(tenant.tenant_id, tenant.partner_id)


def require_reach(tenant_id: str | None) -> dict:
    """The cached tenant if the caller may look into it; a uniform 404 otherwise (existing or not)."""
    if not isinstance(tenant_id, str) or not tenancy.TENANT_ID_RE.match(tenant_id):
        raise ScaiVaultError("tenant_not_found", "no such tenant")
    rt = runtime()
    try:
        tenancy.resolve(g.identity, rt.authenticator.tenant, None, tenant_id)
    except ScaiVaultError as exc:
        if exc.status in (403, 404):
            raise ScaiVaultError("tenant_not_found", "no such tenant") from None
        raise
    row = rt.authenticator.tenant(tenant_id)
    if row is None:
        raise ScaiVaultError("tenant_not_found", "no such tenant")
    return row
