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
  `admin(sys="sys/audit")`: as admin(), or delegated like Vault's sys/ paths: a caller without the
  role passes when a policy grants the HTTP method's permission (GET read, DELETE delete, other
  write) on that reserved system path in the request's tenant (issue 16).
- `role("super_admin", "partner_admin")`: one of these roles anywhere; the view then limits what
  it touches to the role's reach.
- `reach("tenant_id")`: the tenant in that view argument must be within the caller's reach,
  answered with a uniform 404 otherwise; `reach(None)`: the view names the tenant itself
  (`require_reach(tenant_id)`) once it has looked the object up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import g

from ..auth import tenancy
from ..errors import ScaiVaultError
from ..policy.access import request_context
from ..policy.paths import SYSTEM_PREFIX, path_problem, refuse_system_path, validate_path
from .http import current_request, runtime

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
    sys_path: str | None = None

    def describe(self) -> dict[str, Any]:
        """The declaration as shown in the OpenAPI document."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("permission", "level", "arg", "sys_path"):
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
            if admin_allows(self.level or "tenant"):
                return
            if self.sys_path is not None and system_path_allows(self.sys_path):
                return
            details: dict[str, Any] = {"required": f"admin:{self.level}"}
            if self.sys_path is not None:
                details["system_path"] = self.sys_path
                details["permission"] = method_permission(current_request().method)
            raise ScaiVaultError("access_denied", f"this needs an admin role over this {self.level}"
                                 + (f" or a policy granting it on {self.sys_path}" if self.sys_path else ""),
                                 details=details)
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


def admin(level: str = "tenant", *, sys: str | None = None) -> Authorization:
    if level not in ADMIN_LEVELS:
        raise ValueError(f"admin level must be one of {ADMIN_LEVELS}")
    if sys is not None and (level != "tenant" or not sys.startswith(SYSTEM_PREFIX) or path_problem(sys)):
        raise ValueError("a delegable admin call names a valid sys/ path and acts in a tenant")
    return Authorization("admin", level=level, sys_path=sys)


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
    _refuse_colon_method(path)
    validate_path(path)
    if permission_name == "write":
        refuse_system_path(path)     # sys/ names administrative resources, never secrets (issue 16)
    require_grant(path, permission_name, partner=partner)


def require_grant(path: str, permission_name: str, *, partner: bool = False) -> None:
    """Role or policy must grant `permission_name` on the policy path `path` (a secret, or the path
    an engine, CA, role or lease is governed by); the refusal is raised and the pipeline audits it
    naming `path`."""
    decision = grants(path, permission_name, partner=partner)
    if not decision.allowed:
        g.refused_path = path
        raise decision.error(path)


def grants(path: str, permission_name: str, *, partner: bool = False):
    """The caller's access decision for `permission_name` on `path` (nothing raised, nothing audited)."""
    identity = g.identity
    return runtime().access.decide(identity, g.tenant, path, permission_name,
                                   request_context(identity, current_request().remote_addr), partner_secret=partner)


BATCH_ROUTES = ("batch", "batch/metadata")


def _refuse_colon_method(path) -> None:
    """`PUT {path}:metadata` is a method the custom-method route lacks (405 with its Allow), not a bad path.

    Likewise the batch routes: `batch` and `batch/metadata` are reserved secret paths, so `PUT
    /v1/secrets/batch/metadata` is a method the batch route lacks, not a secret write (issue 16).
    """
    if path in BATCH_ROUTES and current_request().path.endswith("/v1/secrets/" + path):
        raise ScaiVaultError("method_not_allowed", f"{current_request().method} is not allowed on /v1/secrets/{path}",
                             headers={"Allow": "OPTIONS, POST"}, details={"allowed": ["OPTIONS", "POST"]})
    if not isinstance(path, str) or ":" not in path:
        return
    verb = path.rsplit(":", 1)[1]
    from flask import current_app

    allowed = sorted({m for rule in current_app.url_map.iter_rules() if rule.rule.endswith(">:" + verb)
                      for m in (rule.methods or ())})
    if allowed:
        raise ScaiVaultError("method_not_allowed", f"{current_request().method} is not allowed on :{verb}",
                             headers={"Allow": ", ".join(allowed)}, details={"allowed": allowed})


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


def method_permission(method: str) -> str:
    """The policy permission an admin call needs on its system path: GET read, DELETE delete, else write."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "delete" if method == "DELETE" else "write"


def system_path_allows(sys_path: str) -> bool:
    """Does a policy of the caller grant the request method's permission on `sys_path` in this tenant?"""
    tenant = g.get("tenant")
    if tenant is None:
        return False
    request = current_request()
    decision = runtime().access.decide(g.identity, tenant, sys_path, method_permission(request.method),
                                       request_context(g.identity, request.remote_addr))
    return decision.allowed


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
