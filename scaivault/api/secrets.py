"""/v1/secrets and /v1/partner/secrets: read, write, list, batch, versions, metadata, delete.

Custom methods use Google's colon style (`{path}:versions`, `{path}:metadata`,
`{path}:restore`, `{path}:destroy`): ':' is outside the path alphabet, so they can never
collide with a secret path. Each view: validate the path, authorise it (scope by the
pipeline, then the permission declared on @endpoint, from the path alone), call the store, respond.
"""
from __future__ import annotations

import functools
from typing import Annotated, Any, ClassVar, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from .. import inputs, ratelimit
from ..audit import record_now
from ..config import parse_duration
from ..crypto.keyring import tenant_partner_unknown
from ..errors import ScaiVaultError
from ..policy.access import request_context
from ..policy.glob import PathPattern
from ..policy.paths import validate_path
from ..services.secrets import MAX_VERSIONS_LIMIT, SecretOwner, WriteRequest
from .auditing import entry_for_request, record_denial
from .authorization import permission, require_permission
from .http import bool_arg, current_request, query_args, runtime
from .params import Duration, PatchBody, SecretPath, SecretType
from .pipeline import endpoint

bp = Blueprint("secrets", __name__)

BATCH_MAX = 100


# ------------------------------------------------------------------ request bodies
class WriteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_versions: int | None = Field(default=None, ge=1, le=MAX_VERSIONS_LIMIT,
                                     description="versions kept; older ones are pruned on write")
    expires_in: Duration | None = Field(default=None, description="duration such as 24h or 90d; sets expires_at "
                                                                  "(null clears it; left out: kept)")
    rotation_policy_id: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    cas: int | None = Field(default=None, ge=0, le=inputs.PG_INT_MAX, description="check-and-set: 0 = create only, N = only if current is N")


class SecretWriteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nul_allowed_under: ClassVar[frozenset[str]] = frozenset({"data"})   # sealed as bytes, never stored as text
    data: dict[str, Any] = Field(description="the secret payload, a JSON object (at most MAX_SECRET_BYTES)")
    secret_type: SecretType | None = Field(default=None, description="kv | json | certificate | ssh_key | api_key")
    metadata: dict[str, Any] | None = Field(default=None, description="description, tags, owner, custom keys")
    options: WriteOptions | None = None
    secret_policy_id: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$",
                                         description="link a value-generation recipe (sp_...)")


class MetadataPatchBody(PatchBody):
    metadata: dict[str, Any] = Field(default=None, description="JSON merge patch (null removes a key)")  # type: ignore[assignment]
    max_versions: int = Field(default=None, ge=1, le=MAX_VERSIONS_LIMIT)                   # type: ignore[assignment]
    rotation_policy_id: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    expires_in: Duration | None = None


class DestroyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    versions: list[Annotated[int, Field(ge=1, le=inputs.PG_INT_MAX)]] = Field(min_length=1, max_length=100)


class BatchReadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_metadata: bool = False
    fail_fast: bool = False
    version: int | None = Field(default=None, ge=1, le=inputs.PG_INT_MAX)


class BatchReadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[SecretPath] = Field(min_length=1, max_length=BATCH_MAX)
    options: BatchReadOptions = BatchReadOptions()


class BatchMetadataOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expand_wildcards: bool = False


class BatchMetadataBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1, max_length=BATCH_MAX)
    options: BatchMetadataOptions = BatchMetadataOptions()


# ------------------------------------------------------------------ response bodies (documentation)
class SecretMetadataView(BaseModel):
    path: str
    secret_type: str
    version: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    expires_at: str | None = None
    rotation_policy_id: str | None = None
    max_versions: int
    last_accessed_at: str | None = None
    deleted_at: str | None = None
    recoverable_until: str | None = None


class SecretView(SecretMetadataView):
    data: dict[str, Any]
    current_version: int
    version_created_at: str | None = None


class SecretDetailView(SecretMetadataView):
    version_count: int
    readable_versions: int
    rotation: dict[str, Any]
    expired: bool
    deleted: bool


class VersionItem(BaseModel):
    version: int
    created_at: str
    created_by: str | None
    size_bytes: int
    state: Literal["active", "destroyed"]
    current: bool
    destroyed_at: str | None = None


class VersionsView(BaseModel):
    path: str
    current_version: int
    max_versions: int
    deleted: bool
    recoverable_until: str | None = None
    versions: list[VersionItem]


class DeleteView(BaseModel):
    path: str
    permanent: bool
    version_count: int
    deleted_at: str
    recoverable_until: str | None = None


class DestroyView(BaseModel):
    path: str
    destroyed: list[int]
    already_destroyed: list[int]


class ListItem(BaseModel):
    path: str
    secret_type: str
    version: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    expires_at: str | None = None


class ListView(BaseModel):
    secrets: list[ListItem]
    folders: list[str] | None = Field(default=None, description="with delimiter=/ only: sub-folders, ending in '/'")
    cursor: str | None
    has_more: bool


class BatchError(BaseModel):
    code: str
    message: str


class BatchReadView(BaseModel):
    secrets: dict[str, dict[str, Any]]
    errors: dict[str, BatchError]


class BatchMetadataView(BaseModel):
    secrets: dict[str, SecretMetadataView]
    errors: dict[str, BatchError]
    truncated: bool = False


# ------------------------------------------------------------------ helpers
def _owner(partner: bool) -> SecretOwner:
    tenant = g.tenant
    if partner:
        if not tenant.partner_id:
            raise ScaiVaultError("tenant_not_found", "this tenant belongs to no partner, so it has no partner secrets")
        return SecretOwner(tenant.partner_id, None)
    if not tenant.partner_id:
        raise tenant_partner_unknown(tenant.tenant_id)
    return SecretOwner(tenant.partner_id, tenant.tenant_id)


def _may_erase(path: str, partner: bool):
    """Lowering max_versions erases history like :destroy, so it needs `delete` as well (F11)."""
    return functools.partial(require_permission, path, "delete", partner)


def _actor() -> str:
    return g.identity.identity_id


def _int_arg(name: str) -> int | None:
    raw = query_args().get(name)
    if raw is None or raw == "":
        return None
    return inputs.parse_int(raw, name, low=1, high=inputs.PG_INT_MAX)


_bool_arg = bool_arg


def _route(rule: str, name: str, view, methods: list[str]) -> None:
    bp.add_url_rule("/v1/secrets" + rule, endpoint=name, view_func=view, methods=methods, defaults={"partner": False})
    bp.add_url_rule("/v1/partner/secrets" + rule, endpoint="partner_" + name, view_func=view, methods=methods,
                    defaults={"partner": True})


# ------------------------------------------------------------------ single secrets
def write_version(owner: SecretOwner, path: str, req: WriteRequest, actor: str, **options) -> tuple[dict, bool]:
    """Every API write of a secret version: federated paths are refused or written through first."""
    rt = runtime()
    route = None if owner.tenant_id is None else rt.federation.check_write(owner, path)
    if route is not None:   # a synced path whose backend takes writes: the backend first
        return rt.federation.write_through(owner, path, req, route, actor, entry_for_request, **options)
    return rt.secret_store.write(owner, path, req, actor, entry_for_request, **options)


@endpoint("secrets:read", scope="secrets:read", response=SecretView, summary="Read a secret (current or ?version=N)",
          query={"version": "version number to read; default the current version"},
          authorize=permission("read"))
def read_secret(path: str, partner: bool):
    version = _int_arg("version")
    rt, owner = runtime(), _owner(partner)
    route = None if partner else rt.federation.route(owner, path)
    # a dict, not jsonify(): Flask answers it alike, and the hot route (api/hot_routes.py) leaner
    if route is not None and route.mode == "proxy":
        return rt.federation.proxy_read(owner, path, route, entry_for_request)
    try:
        return rt.secret_store.read(owner, path, version, entry_for_request)
    except ScaiVaultError as exc:
        raise _sub_resource_hint(exc, owner, path, partner) from None


CUSTOM_METHODS = ("versions", "metadata", "restore", "destroy")


def _sub_resource_hint(exc: ScaiVaultError, owner: SecretOwner, path: str, partner: bool) -> ScaiVaultError:
    """`GET app/db/versions` where app/db exists but app/db/versions does not: name `app/db:versions` (issue 16).

    Only for a caller that may read or list the parent, so the hint never tells anyone else it exists.
    """
    parent, _, last = path.rpartition("/")
    if exc.code != "secret_not_found" or last not in CUSTOM_METHODS or not parent:
        return exc
    rt, identity = runtime(), g.identity
    ctx = request_context(identity, current_request().remote_addr)
    if not any(rt.access.decide(identity, g.tenant, parent, perm, ctx, partner_secret=partner).allowed
               for perm in ("read", "list")) or not rt.secret_store.exists(owner, parent):
        return exc
    return ScaiVaultError("secret_not_found", f"no secret at {path}; custom methods take a colon: "
                          f"GET {'/v1/partner/secrets' if partner else '/v1/secrets'}/{parent}:{last}",
                          details={**(exc.details or {}), "path": path, "hint": f"{parent}:{last}"})


@endpoint("secrets:write", scope="secrets:write", body=SecretWriteBody, response=SecretMetadataView,
          summary="Write a new version (201 for a new path, 200 for a new version)", status=201,
          authorize=permission("write"))
def write_secret(path: str, partner: bool):
    body: SecretWriteBody = g.body
    options = body.options or WriteOptions()
    req = WriteRequest(data=body.data, secret_type=body.secret_type, metadata=body.metadata,
                       max_versions=options.max_versions, expires_in=options.expires_in,
                       rotation_policy_id=options.rotation_policy_id, cas=options.cas,
                       secret_policy_id=body.secret_policy_id,
                       keep_expiry="expires_in" not in options.model_fields_set)   # null clears, absent keeps
    view, created = write_version(_owner(partner), path, req, _actor(), may_lower_retention=_may_erase(path, partner))
    return view, (201 if created else 200)


@endpoint("secrets:delete", scope="secrets:delete", response=DeleteView,
          summary="Delete a secret (soft, restorable until recoverable_until; ?permanent=true destroys every version)",
          query={"permanent": "true: destroy every version now, no restore"},
          authorize=permission("delete"))
def delete_secret(path: str, partner: bool):
    permanent = _bool_arg("permanent")
    return jsonify(runtime().secret_store.delete(_owner(partner), path, permanent, _actor(), entry_for_request))


@endpoint("secrets:list", scope="secrets:list", response=VersionsView, summary="List the versions of a secret",
          authorize=permission("list"))
def secret_versions(path: str, partner: bool):
    return jsonify(runtime().secret_store.versions(_owner(partner), path, entry_for_request))


@endpoint("secrets:list", scope="secrets:list", response=SecretDetailView,
          summary="Read a secret's metadata, version count and rotation link (never the value)",
          authorize=permission("list"))
def read_metadata(path: str, partner: bool):
    return jsonify(runtime().secret_store.read_metadata(_owner(partner), path, entry_for_request))


@endpoint("secrets:write", scope="secrets:write", body=MetadataPatchBody, response=SecretMetadataView,
          summary="Update metadata, max_versions, rotation link or expiry without a new version",
          authorize=permission("write"))
def patch_metadata(path: str, partner: bool):
    patch = g.body.model_dump(exclude_unset=True)
    return jsonify(runtime().secret_store.update_metadata(_owner(partner), path, patch, _actor(), entry_for_request,
                                                          may_lower_retention=_may_erase(path, partner)))


@endpoint("secrets:delete", scope="secrets:delete", response=SecretMetadataView,
          summary="Restore a soft-deleted secret within its retention",
          authorize=permission("delete"))
def restore_secret(path: str, partner: bool):
    return jsonify(runtime().secret_store.restore(_owner(partner), path, _actor(), entry_for_request))


@endpoint("secrets:delete", scope="secrets:delete", body=DestroyBody, response=DestroyView,
          summary="Destroy versions: erase their ciphertext for good (reads answer 410 version_destroyed)",
          authorize=permission("delete"))
def destroy_versions(path: str, partner: bool):
    return jsonify(runtime().secret_store.destroy(_owner(partner), path, g.body.versions, _actor(), entry_for_request))


# ------------------------------------------------------------------ listing
@endpoint("secrets:list", scope="secrets:list", response=ListView,
          summary="List secrets the caller may list, in path order (keyset pagination)",
          query={"prefix": "only paths starting with this", "delimiter": "'/' lists one level: folders and secrets",
                 "limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page",
                 "tag": "only secrets carrying this tag", "owner": "only secrets whose metadata.owner is this",
                 "q": "only paths containing this substring", "include_deleted": "true: soft-deleted ones too",
                 "expires_within": "only secrets expiring within this duration (e.g. 30d), expired ones included",
                 "include_partner": "true: also the partner's shared secrets (partner_secrets, paged by partner_cursor)",
                 "partner_cursor": "from the previous page's partner_cursor"},
          authorize=permission("list", each=True))
def list_secrets(partner: bool):
    args = request.args
    prefix = args.get("prefix", "")
    if prefix:
        trimmed = prefix[:-1] if prefix.endswith("/") else prefix
        validate_path(trimmed)
    for name in ("tag", "owner", "q"):
        if len(args.get(name, "")) > 256:
            raise ScaiVaultError("invalid_request", f"{name} is longer than 256 characters")
    filters = {"tag": args.get("tag"), "owner": args.get("owner"), "q": args.get("q"),
               "include_deleted": _bool_arg("include_deleted"), "expires_within": None}
    if args.get("expires_within"):
        try:
            filters["expires_within"] = parse_duration(args["expires_within"])
        except ValueError:
            raise ScaiVaultError("invalid_duration", "expires_within must be a duration such as 7d or 30d") from None
    result = _listing(partner, prefix, args.get("cursor"), filters)
    if not partner and _bool_arg("include_partner") and g.tenant.partner_id:
        shared = _listing(True, prefix, args.get("partner_cursor"), filters)   # issue 16: only when asked
        result.update(partner_secrets=shared.get("secrets", []), partner_cursor=shared.get("cursor"),
                      partner_has_more=shared.get("has_more", False))
        if "folders" in shared:
            result["partner_folders"] = shared["folders"]
    return jsonify(result)


def _listing(partner: bool, prefix: str, cursor: str | None, filters: dict) -> dict:
    """One owner's listing, narrowed to what the caller may list."""
    rt = runtime()
    args = request.args
    identity, tenant = g.identity, g.tenant
    filters = dict(filters)
    ctx = request_context(identity, request.remote_addr)
    policies = (rt.access.partner_policies(identity, tenant, "list") if partner
                else rt.access.tenant_policies(identity, tenant))
    visible = subtree = prefixes = None
    exact = policies is None
    if policies is not None and partner and rt.access.partner_default(identity, tenant, "list"):
        # shared with the partner's tenants: everything, less what partner-scope deny rules take away
        exact = not policies.has_list_denies()
        if not exact:
            visible = lambda p: policies.deny_decision(p, "list", ctx) is None   # noqa: E731
            subtree = lambda folder: False                                       # noqa: E731
    elif policies is not None:
        visible = lambda p: policies.allows(p, "list", ctx)        # noqa: E731
        subtree = lambda folder: policies.lists_whole_subtree(folder, ctx)  # noqa: E731
        prefixes = policies.list_prefixes()
        filters["path_regex"] = policies.list_sql_regex(ctx)
        exact = filters["path_regex"] is not None and not policies.has_list_denies()
    return rt.secret_store.list(_owner(partner), prefix=prefix, delimiter=args.get("delimiter"),
                                limit=args.get("limit"), cursor=cursor, filters=filters,
                                visible=visible, prefixes=prefixes, subtree_visible=subtree,
                                audit=entry_for_request, exact_visibility=exact)


# ------------------------------------------------------------------ batch
def _batch_error(exc: ScaiVaultError) -> dict:
    return {"code": exc.code, "message": exc.message}


@bp.post("/v1/secrets/batch")
@endpoint("secrets:batch", scope="secrets:read", body=BatchReadBody, response=BatchReadView,
          summary="Read up to 100 secrets; each path authorised on its own; partial success unless fail_fast",
          authorize=permission("read", each=True))
def batch_read():
    body: BatchReadBody = g.body
    options = body.options
    rt = runtime()
    ctx = request_context(g.identity, request.remote_addr)
    policies = rt.access.tenant_policies(g.identity, g.tenant)
    allowed: list[str] = []
    errors: dict[str, dict] = {}
    for path in dict.fromkeys(body.paths):
        try:
            validate_path(path)
            if policies is not None:
                decision = policies.decide(path, "read", ctx)
                if not decision.allowed:
                    raise decision.error(path)
        except ScaiVaultError as exc:
            if options.fail_fast:
                if exc.status == 403:
                    record_denial(rt, "secrets:batch", exc, secret_path=path)
                raise ScaiVaultError(exc.code, f"batch aborted at {path[:512]}: {exc.message}",
                                     details={**(exc.details or {}), "path": path[:512]}) from None
            errors[path] = _batch_error(exc)
            if exc.status == 403:
                record_now(rt, entry_for_request("read", secret_path=path, success=False,
                                                 extra={"error": exc.code, "batch": True}))
            continue
        allowed.append(path)
    if allowed:
        ratelimit.enforce("secrets:read", cost=len(allowed))
    found, failures = rt.secret_store.read_many(_owner(False), allowed, options.version, entry_for_request,
                                                options.include_metadata)
    if failures and options.fail_fast:
        path, exc = next((p, failures[p]) for p in allowed if p in failures)
        raise ScaiVaultError(exc.code, f"batch aborted at {path}: {exc.message}", details={**(exc.details or {}), "path": path})
    for path, exc in failures.items():
        errors[path] = _batch_error(exc)
    return jsonify({"secrets": found, "errors": errors})


@bp.post("/v1/secrets/batch/metadata")
@endpoint("secrets:batch_metadata", scope="secrets:list", body=BatchMetadataBody, response=BatchMetadataView,
          summary="Metadata of up to 100 paths (or glob patterns with expand_wildcards), never values",
          authorize=permission("list", each=True))
def batch_metadata():
    body: BatchMetadataBody = g.body
    rt = runtime()
    ctx = request_context(g.identity, request.remote_addr)
    policies = rt.access.tenant_policies(g.identity, g.tenant)
    visible = (lambda p: True) if policies is None else (lambda p: policies.allows(p, "list", ctx))
    owner = _owner(False)
    wanted: list[str] = []
    errors: dict[str, dict] = {}
    truncated = False
    for item in dict.fromkeys(body.paths):
        is_pattern = body.options.expand_wildcards and ("*" in item or "?" in item)
        try:
            if is_pattern:
                pattern = PathPattern.compile(item)
                room = 1000 - len(wanted)
                if room <= 0:
                    truncated = True
                    continue
                matches, cut = rt.secret_store.expand_pattern(owner, pattern.literal_prefix, pattern.matches,
                                                              visible, room, pattern.sql_regex)
                truncated = truncated or cut
                wanted.extend(m for m in matches if m not in wanted)
                continue
            validate_path(item)
            if not visible(item):
                raise (policies.decide(item, "list", ctx).error(item) if policies is not None
                       else ScaiVaultError("access_denied", "not allowed"))
            wanted.append(item)
        except ScaiVaultError as exc:
            errors[item] = _batch_error(exc)
    denied = [path for path, err in errors.items()
              if err["code"] in ("access_denied", "ip_not_allowed", "mfa_required", "time_window_violation")]
    found = rt.secret_store.metadata_many(owner, wanted, entry_for_request, denied)
    for path in wanted:
        if path not in found and path not in errors and path in body.paths:
            errors[path] = {"code": "secret_not_found", "message": "no secret at this path"}
    return jsonify({"secrets": found, "errors": errors, "truncated": truncated})


_route("/<path:path>", "read", read_secret, ["GET"])
_route("/<path:path>", "write", write_secret, ["PUT"])
_route("/<path:path>", "delete", delete_secret, ["DELETE"])
_route("/<path:path>:versions", "versions", secret_versions, ["GET"])
_route("/<path:path>:metadata", "metadata", read_metadata, ["GET"])
_route("/<path:path>:metadata", "patch_metadata", patch_metadata, ["PATCH"])
_route("/<path:path>:restore", "restore", restore_secret, ["POST"])
_route("/<path:path>:destroy", "destroy", destroy_versions, ["POST"])
_route("", "list", list_secrets, ["GET"])
