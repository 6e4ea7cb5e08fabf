"""/v1/dynamic/engines (engines, roles, credentials) and /v1/leases.

Policies govern dynamic credentials on the path `dynamic/{engine}/{role}` (credentials: read;
roles: read/list/write/delete) and `dynamic/{engine}` (engines: read/list/write/delete,
rotate-root: rotate), with the scopes dynamic:read (read, generate, leases) and
dynamic:manage (configuration). The paths are composed from several view arguments, so each
view declares `permission(..., each=True)` and checks its path with `require_grant`.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from .. import pagination
from ..dynamic.templates import MAX_STATEMENT_CHARS, MAX_STATEMENTS
from ..errors import ScaiVaultError
from ..services.dynamic import ENGINE_NAME_RE, ENGINE_TYPES, MAX_TTL_CEILING, ROLE_NAME_RE
from .auditing import entry_for_request
from .authorization import grants, permission, require_grant
from .http import bool_arg, runtime
from .params import YEAR_DURATION_RE, SecretPath
from .pipeline import endpoint, parse_body

bp = Blueprint("dynamic", __name__)

# a duration (1s..the ceiling) or seconds; a bool is not a duration
Duration = Annotated[str, Field(pattern=YEAR_DURATION_RE)] | Annotated[StrictInt, Field(ge=1, le=MAX_TTL_CEILING)] | None


Statement = Annotated[str, Field(min_length=1, max_length=MAX_STATEMENT_CHARS, pattern=r"\S")]
Statements = Annotated[list[Statement], Field(max_length=MAX_STATEMENTS)]
# engine and role names as the service checks them (check_role_name, ENGINE_NAME_RE)
DYNAMIC_PATH = {"name": {"type": "string", "pattern": ENGINE_NAME_RE.pattern},
                "role": {"type": "string", "pattern": ROLE_NAME_RE.pattern}}
_DYNAMIC_CODES = {"name": "invalid_config", "type": "invalid_config", "config": "invalid_config",
                  "default_ttl": "invalid_duration", "max_ttl": "invalid_duration"}
_ROLE_CODES = {"name": "invalid_role", "creation_statements": "invalid_role", "revocation_statements": "invalid_role",
               "renew_statements": "invalid_role", "default_ttl": "invalid_duration", "max_ttl": "invalid_duration"}


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(default=None, max_length=64,
                        description="postgresql | mysql | mariadb | a third-party plugin")          # type: ignore[assignment]
    connection_url: str = Field(default=None, max_length=2048, pattern=r"^[a-z][a-z0-9+.-]*://",
                                description="URL with {{username}} and {{password}} placeholders")  # type: ignore[assignment]
    root_credentials_path: SecretPath = Field(default=None, description="secret holding {username, password}")  # type: ignore[assignment]


class EngineCreateConfig(EngineConfig):
    plugin: str = Field(max_length=64, description="postgresql | mysql | mariadb | a third-party plugin")
    connection_url: str = Field(max_length=2048, pattern=r"^[a-z][a-z0-9+.-]*://")
    root_credentials_path: SecretPath


class EngineBody(BaseModel):
    """PATCH: any member (the name is immutable); none may be null."""
    model_config = ConfigDict(extra="forbid")
    field_codes: ClassVar[dict[str, str]] = _DYNAMIC_CODES
    type: Literal[ENGINE_TYPES] = Field(default=None, description="database")                  # type: ignore[valid-type]
    config: EngineConfig = None                                                                 # type: ignore[assignment]
    default_ttl: Duration = Field(default=None, description="lease TTL when none is asked for (default 1h)")
    max_ttl: Duration = Field(default=None, description="upper bound of any lease of this engine (default 24h)")


class EngineCreate(EngineBody):
    field_codes: ClassVar[dict[str, str]] = _DYNAMIC_CODES
    codes_for_missing: ClassVar[bool] = True
    name: str = Field(pattern=ENGINE_NAME_RE.pattern, description="engine name (a-z, 0-9, _ and -); immutable")
    config: EngineCreateConfig


class RoleBody(BaseModel):
    """PUT .../roles/{role}: the role named by the path."""
    model_config = ConfigDict(extra="forbid")
    field_codes: ClassVar[dict[str, str]] = _ROLE_CODES
    codes_for_missing: ClassVar[bool] = True
    creation_statements: Annotated[Statements, Field(min_length=1)] = Field(
        description="run in order to create the user; {{name}} {{password}} {{expiration}}")
    revocation_statements: Statements | None = Field(default=None, description="run on revoke and expiry (default: drop the user)")
    renew_statements: Statements | None = Field(default=None, description="run on renew ({{name}} {{expiration}})")
    default_ttl: Duration = None
    max_ttl: Duration = None


class RoleCreate(RoleBody):
    """POST .../roles: the role named in the body."""
    name: str = Field(pattern=ROLE_NAME_RE.pattern, description="the role name")


class CredsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl: Duration = Field(default=None, description="lease TTL; capped by the role's and the engine's max_ttl")


class RenewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    increment: Duration = Field(default=None, description="extend to now + increment (default: the role's TTL)")


class RevokePrefixBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(min_length=1, max_length=256, description="lease id prefix: <engine>/, <engine>/<role>/, ...")


class LeaseCreds(BaseModel):
    username: str
    password: str


class CredsView(BaseModel):
    lease_id: str
    lease_duration: int
    renewable: bool
    expires_at: str
    data: LeaseCreds


# ------------------------------------------------------------------ authorisation (one place)
def _lease_access(tenant_id: str, lease_id: str, permission: str, owner_permission: str | None) -> dict:
    """The lease, if the caller may act on it: its owner (by principal) needs `owner_permission` on
    the role (None: nothing more), anyone else `permission`."""
    lease, owner = runtime().dynamic.lease(tenant_id, lease_id)
    path = f"dynamic/{lease['engine']}/{lease['role']}"
    if owner == g.identity.principal:
        if owner_permission:
            require_grant(path, owner_permission)
        return lease
    require_grant(path, permission)
    return lease


def _body() -> dict[str, Any]:
    return g.body.model_dump(exclude_unset=True)


def _optional_body(model: type[BaseModel]) -> dict[str, Any]:
    """An optional JSON body (an empty POST is fine), validated against `model`."""
    if not request.get_data(cache=True).strip():
        return {}
    return parse_body(model).model_dump(exclude_unset=True)


def _actor() -> str:
    return g.identity.identity_id


# ------------------------------------------------------------------ engines
@bp.post("/v1/dynamic/engines")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:manage", body=EngineCreate, status=201,
          summary="Create an engine: reads the root credentials secret (caller needs read) and tests the connection",
          authorize=permission("write", each=True))
def create_engine():
    body = _body()
    name = body.get("name")
    if isinstance(name, str):
        require_grant(f"dynamic/{name}", "write")
    tenant = g.tenant
    view = runtime().dynamic.create_engine(tenant.tenant_id, tenant.partner_id, body, _actor(), entry_for_request,
                                           lambda path: require_grant(path, "read"))
    return jsonify(view), 201


@bp.get("/v1/dynamic/engines")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:read", summary="List the engines the caller may list", query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"},
          authorize=permission("list", each=True))
def list_engines():
    engines = runtime().dynamic.list_engines(g.tenant.tenant_id, lambda name: grants(f"dynamic/{name}", "list").allowed)
    return jsonify(pagination.paginate("engines", engines["engines"], request.args.get("limit"), request.args.get("cursor"),
                                       sort_key=lambda engine: engine["name"]))


@bp.get("/v1/dynamic/engines/<name>")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:read", summary="Read an engine (never its root credentials)",
          authorize=permission("read", each=True))
def get_engine(name: str):
    require_grant(f"dynamic/{name}", "read")
    return jsonify(runtime().dynamic.engine_view(runtime().dynamic.engine(g.tenant.tenant_id, name)))


@bp.patch("/v1/dynamic/engines/<name>")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:manage", body=EngineBody,
          summary="Update an engine; a changed connection is tested again",
          authorize=permission("write", each=True))
def update_engine(name: str):
    require_grant(f"dynamic/{name}", "write")
    return jsonify(runtime().dynamic.update_engine(g.tenant.tenant_id, name, _body(), _actor(), entry_for_request,
                                                   lambda path: require_grant(path, "read")))


@bp.delete("/v1/dynamic/engines/<name>")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:manage", query={"force": "true: revoke the live leases first"},
          summary="Delete an engine (409 while leases are live unless ?force=true)",
          authorize=permission("delete", each=True))
def delete_engine(name: str):
    force = bool_arg("force")
    require_grant(f"dynamic/{name}", "delete")
    return jsonify(runtime().dynamic.delete_engine(g.tenant.tenant_id, name, force, entry_for_request))


@bp.get("/v1/dynamic/engines/<name>/health")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:read", summary="Test the engine's connection; lease counts and failed revocations",
          authorize=permission("read", each=True))
def engine_health(name: str):
    require_grant(f"dynamic/{name}", "read")
    return jsonify(runtime().dynamic.health(g.tenant.tenant_id, name))


@bp.post("/v1/dynamic/engines/<name>/rotate-root")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:manage",
          summary="Set a new root password in the database and store it as the next version of the root secret",
          authorize=permission("rotate", each=True))
def rotate_root(name: str):
    require_grant(f"dynamic/{name}", "rotate")
    return jsonify(runtime().dynamic.rotate_root(g.tenant.tenant_id, name, _actor(), entry_for_request,
                                                 lambda path: require_grant(path, "rotate")))


# ------------------------------------------------------------------ roles
@bp.get("/v1/dynamic/engines/<name>/roles")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:read", summary="List the roles of an engine the caller may list", query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"},
          authorize=permission("list", each=True))
def list_roles(name: str):
    roles = runtime().dynamic.list_roles(g.tenant.tenant_id, name,
                                         lambda role: grants(f"dynamic/{name}/{role}", "list").allowed)
    return jsonify(pagination.paginate("roles", roles["roles"], request.args.get("limit"), request.args.get("cursor"),
                                       sort_key=lambda role: role["name"]))


@bp.post("/v1/dynamic/engines/<name>/roles")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:manage", body=RoleCreate, status=201, summary="Create or replace a role (name in the body)",
          authorize=permission("write", each=True))
def create_role(name: str):
    body = _body()
    role = body.pop("name", None)
    if not isinstance(role, str):
        raise ScaiVaultError("invalid_role", "name is required")
    return _put_role(name, role, body)


@bp.put("/v1/dynamic/engines/<name>/roles/<role>")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:manage", body=RoleBody, status=201, summary="Create (201) or replace (200) a role",
          authorize=permission("write", each=True))
def put_role(name: str, role: str):
    return _put_role(name, role, _body())


def _put_role(name: str, role: str, body: dict):
    require_grant(f"dynamic/{name}/{role}", "write")
    view, created = runtime().dynamic.put_role(g.tenant.tenant_id, name, role, body, _actor(), entry_for_request)
    return jsonify(view), (201 if created else 200)


@bp.get("/v1/dynamic/engines/<name>/roles/<role>")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:read", summary="Read a role",
          authorize=permission("read", each=True))
def get_role(name: str, role: str):
    require_grant(f"dynamic/{name}/{role}", "read")
    return jsonify(runtime().dynamic.get_role(g.tenant.tenant_id, name, role))


@bp.delete("/v1/dynamic/engines/<name>/roles/<role>")
@endpoint("dynamic:admin", path=DYNAMIC_PATH, scope="dynamic:manage", summary="Delete a role (409 while it has live leases)",
          authorize=permission("delete", each=True))
def delete_role(name: str, role: str):
    require_grant(f"dynamic/{name}/{role}", "delete")
    return jsonify(runtime().dynamic.delete_role(g.tenant.tenant_id, name, role, entry_for_request))


# ------------------------------------------------------------------ credentials
@bp.post("/v1/dynamic/engines/<name>/creds/<role>")
@endpoint("dynamic:generate", path=DYNAMIC_PATH, scope="dynamic:read", response=CredsView,
          summary="Generate a credential: a new database user under a lease",
          authorize=permission("read", each=True))
def generate_creds(name: str, role: str):
    require_grant(f"dynamic/{name}/{role}", "read")
    body = _optional_body(CredsBody)
    return jsonify(runtime().dynamic.generate(g.tenant.tenant_id, name, role, body.get("ttl"), _actor(),
                                              g.identity.principal, entry_for_request))


# ------------------------------------------------------------------ leases
@bp.get("/v1/leases")
@endpoint("leases", scope="dynamic:read", summary="List leases: the caller's own and those of roles it may list",
          query={"engine": "engine name", "role": "role name", "identity": "identity that generated it",
                 "state": ("active | revoke_failed | revoked | live", {"type": "string", "enum": ["active", "revoke_failed", "revoked", "live"]}), "limit": "1..1000 (default 100)",
                 "cursor": "from the previous page"},
          authorize=permission("list", each=True))
def list_leases():
    args = request.args
    rt = runtime()
    admin = rt.access.admin_over_tenant(g.identity, g.tenant)
    visible = None if admin else (lambda engine, role: grants(f"dynamic/{engine}/{role}", "list").allowed)
    return jsonify(rt.dynamic.list_leases(g.tenant.tenant_id, engine=args.get("engine"), role=args.get("role"),
                                          identity=args.get("identity"), state=args.get("state"),
                                          limit=args.get("limit"), cursor=args.get("cursor"),
                                          visible_roles=visible, caller=g.identity.principal))


@bp.get("/v1/leases/<path:lease_id>")
@endpoint("leases", scope="dynamic:read", summary="Read a lease (never its password)",
          authorize=permission("list", each=True))
def get_lease(lease_id: str):
    return jsonify(_lease_access(g.tenant.tenant_id, lease_id, "list", None))


@bp.post("/v1/leases/<path:lease_id>/renew")
@endpoint("leases", scope="dynamic:read",
          summary="Renew a lease by `increment`, capped by its max TTL",
          authorize=permission("write", each=True))
def renew_lease(lease_id: str):
    rt = runtime()
    _lease_access(g.tenant.tenant_id, lease_id, "write", "read")
    body = _optional_body(RenewBody)
    return jsonify(rt.dynamic.renew(g.tenant.tenant_id, lease_id, body.get("increment"), entry_for_request))


@bp.post("/v1/leases/<path:lease_id>/revoke")
@endpoint("leases", scope="dynamic:read",
          summary="Revoke a lease now (200 revoked; 202 when the database refused and a retry is queued)",
          authorize=permission("delete", each=True))
def revoke_lease(lease_id: str):
    rt = runtime()
    _lease_access(g.tenant.tenant_id, lease_id, "delete", None)
    view = rt.dynamic.revoke(g.tenant.tenant_id, lease_id, entry_for_request)
    return jsonify(view), (200 if view["state"] == "revoked" else 202)


@bp.post("/v1/leases/revoke-prefix")
@endpoint("leases", scope="dynamic:manage", body=RevokePrefixBody,
          summary="Revoke every live lease whose id starts with the prefix (admin on that part of dynamic/)",
          authorize=permission("admin", each=True))
def revoke_prefix():
    prefix = g.body.prefix
    require_grant("dynamic/" + prefix.strip("/"), "admin")
    return jsonify(runtime().dynamic.revoke_prefix(g.tenant.tenant_id, prefix, entry_for_request))
