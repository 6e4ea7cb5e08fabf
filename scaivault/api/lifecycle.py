"""/v1/secret-policies, /v1/rotation/* and the secret custom methods :generate and :rotate.

Managing recipes and rotation policies needs the `admin` scope and an admin role over the
tenant, or a policy granting the call on `sys/secret-policies` or `sys/rotation` (`admin(sys=...)`); `:generate` needs `secrets:write` plus a write grant on the path,
`:rotate` and `POST .../rotate` need `secrets:rotate` plus a rotate grant on each path.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ..errors import ScaiVaultError
from ..lifecycle import generators as gen
from ..lifecycle.generators import POLICY_TYPES
from ..policy.paths import validate_path
from ..services.rotation import RotationService
from ..services.secret_policies import SecretPolicyService, TenantScope
from ..services.secrets import SecretOwner, WriteRequest
from .auditing import entry_for_request
from .authorization import admin, admin_allows, permission, require_grant
from .http import bool_arg, runtime
from .params import DURATION_RE, Duration, Name, PatchBody, SecretPath
from .pipeline import endpoint, parse_body
from .secrets import write_version

bp = Blueprint("lifecycle", __name__)


# ------------------------------------------------------------------ bodies
_ONE = DURATION_RE[1:-1]
WarnBefore = Annotated[str, Field(pattern=f"^( *{_ONE} *(, *{_ONE} *){{0,9}})?$",
                                  description="up to 10 comma-separated durations")]
WarnList = Annotated[list[Duration], Field(max_length=10)]


# ------------------------------------------------------------------ recipe fields (spec/20 6.2), one model per generator
FieldName = Annotated[str, Field(pattern=gen.FIELD_NAME.pattern)]
OutputName = Annotated[str, Field(pattern=gen.FIELD_NAME.pattern, description="name of the second output field")]
Length = Annotated[StrictInt, Field(ge=1, le=gen.MAX_LENGTH)]
Charset = Literal[tuple(gen.CHARSETS)]                                                          # type: ignore[valid-type]
_PLACEHOLDER = rf"\{{\{{(uuid|timestamp|(random|hex):[1-9][0-9]{{0,3}})\}}\}}"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RandomConfig(_Config):
    length: Length = 32
    charset: Charset = "alphanumeric"
    require_upper: bool = False
    require_lower: bool = False
    require_digit: bool = False
    require_symbol: bool = False


class HexConfig(_Config):
    length: Length = 32


class UuidConfig(_Config):
    version: Literal[4, 7] = 4


class TemplateConfig(_Config):
    template: str = Field(min_length=1, max_length=gen.MAX_LENGTH, pattern=rf"^([^{{}}]|{_PLACEHOLDER})+$",
                          description="text with {{random:N}}, {{hex:N}}, {{uuid}}, {{timestamp}} (N 1..4096)")


class RsaConfig(_Config):
    bits: Literal[2048, 4096] = 2048
    public_key_field: OutputName | None = None


class EcConfig(_Config):
    curve: Literal["P-256", "P-384"] = "P-256"
    public_key_field: OutputName | None = None


class SshConfig(_Config):
    key_type: Literal["ed25519", "rsa"] = "ed25519"
    comment: str = Field(default="", max_length=256, pattern=r"^[^\r\n]*$")
    bits: Literal[2048, 3072, 4096] | None = Field(default=None, description="only for key_type rsa")
    public_key_field: OutputName | None = None


class BcryptConfig(_Config):
    length: Annotated[StrictInt, Field(ge=1, le=72)] = 24
    rounds: Annotated[StrictInt, Field(ge=4, le=16)] = 12
    charset: Charset = "alphanumeric"
    hash_field: OutputName | None = None


class StaticConfig(_Config):
    value: str = Field(max_length=gen.MAX_LENGTH)


def _field(generator: str, config: type[BaseModel], required: bool = False) -> type[BaseModel]:
    annotations = {"name": FieldName, "generator": Literal[generator], "config": config}
    namespace: dict[str, Any] = {"__annotations__": annotations, "model_config": ConfigDict(extra="forbid")}
    if not required:
        namespace["config"] = Field(default_factory=config)
    return type(f"{config.__name__[:-6]}Field", (BaseModel,), namespace)


RecipeField = Annotated[
    _field("random", RandomConfig) | _field("hex", HexConfig) | _field("uuid", UuidConfig)
    | _field("template", TemplateConfig, True) | _field("rsa_keypair", RsaConfig) | _field("ec_keypair", EcConfig)
    | _field("ssh_keypair", SshConfig) | _field("bcrypt_hash", BcryptConfig) | _field("static", StaticConfig, True),
    Field(discriminator="generator")]
RecipeFields = Annotated[list[RecipeField], Field(min_length=1, max_length=gen.MAX_FIELDS,
                                                  description="one generator per output field (spec/20 6.2); "
                                                              "output names are unique")]


class SecretPolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loc_tags: ClassVar[frozenset[str]] = frozenset(gen.GENERATORS)
    name: Name
    description: str | None = Field(default=None, max_length=2000)
    policy_type: Literal[POLICY_TYPES] | None = Field(default=None, description="UI hint (default custom)")  # type: ignore[valid-type]
    fields: RecipeFields
    is_active: bool = None                                                                     # type: ignore[assignment]


class SecretPolicyPatch(PatchBody):
    loc_tags: ClassVar[frozenset[str]] = frozenset(gen.GENERATORS)
    name: Name = None                                                                          # type: ignore[assignment]
    description: str | None = Field(default=None, max_length=2000)
    policy_type: Literal[POLICY_TYPES] | None = None                                           # type: ignore[valid-type]
    fields: RecipeFields = None                                                                # type: ignore[assignment]
    is_active: bool = None                                                                     # type: ignore[assignment]


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret_policy_id: str | None = Field(default=None, max_length=128)
    secret_type: str | None = None
    metadata: dict[str, Any] | None = None


class RotationPolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    interval: Duration
    description: str | None = Field(default=None, max_length=2000)
    grace_period: Duration | None = Field(default=None, description="default 48h")
    warn_before: WarnBefore | WarnList | None = Field(default=None, description='"7d,1d" or ["7d", "1d"]')
    auto_generate: bool = None                                                                 # type: ignore[assignment]
    secret_policy_id: str | None = Field(default=None, max_length=128)
    webhook_ids: list[str] | None = Field(default=None, max_length=20)


class RotationPolicyPatch(PatchBody):
    name: Name = None                                                                          # type: ignore[assignment]
    interval: Duration = None                                                                  # type: ignore[assignment]
    description: str | None = Field(default=None, max_length=2000)
    grace_period: Duration | None = None
    warn_before: WarnBefore | WarnList | None = None
    auto_generate: bool = None                                                                 # type: ignore[assignment]
    secret_policy_id: str | None = Field(default=None, max_length=128)
    webhook_ids: list[str] | None = Field(default=None, max_length=20)


class AttachBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret_path: SecretPath


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret_paths: list[SecretPath] | None = Field(default=None, max_length=1000)


# ------------------------------------------------------------------ helpers
def _scope() -> TenantScope:
    return TenantScope(g.tenant.tenant_id, g.tenant.partner_id)


def _owner() -> SecretOwner:
    return SecretOwner(g.tenant.partner_id or "", g.tenant.tenant_id)


def _policies() -> SecretPolicyService:
    return SecretPolicyService(runtime().db)


def _rotation() -> RotationService:
    rt = runtime()
    return RotationService(rt.db, rt.secret_store)


def _dump(model: BaseModel) -> dict:
    return model.model_dump(exclude_unset=True)


def _optional_body(model: type[BaseModel]) -> Any:
    """The body validated against `model`, or its defaults when the request has none."""
    if not request.get_data(cache=True):
        return model()
    return parse_body(model)


def _force() -> bool:
    return bool_arg("force")


# ------------------------------------------------------------------ secret policies
@bp.get("/v1/secret-policies")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/secret-policies"), summary="List secret policies (value-generation recipes)",
          query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"})
def list_secret_policies():
    return jsonify(_policies().list(_scope(), request.args.get("limit"), request.args.get("cursor")))


@bp.post("/v1/secret-policies")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/secret-policies"),
          body=SecretPolicyBody, summary="Create a secret policy", status=201)
def create_secret_policy():
    return jsonify(_policies().create(_scope(), _dump(g.body), g.identity.identity_id, entry_for_request)), 201


@bp.get("/v1/secret-policies/<policy_id>")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/secret-policies"), summary="Get a secret policy")
def get_secret_policy(policy_id: str):
    return jsonify(_policies().get(_scope(), policy_id))


@bp.patch("/v1/secret-policies/<policy_id>")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/secret-policies"), body=SecretPolicyPatch, summary="Update a secret policy")
def patch_secret_policy(policy_id: str):
    return jsonify(_policies().update(_scope(), policy_id, _dump(g.body), entry_for_request))


@bp.delete("/v1/secret-policies/<policy_id>")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/secret-policies"),
          summary="Delete a secret policy (409 while rotation policies use it, unless ?force=true)",
          status=204, query={"force": "true: detach it from rotation policies and secrets first"})
def delete_secret_policy(policy_id: str):
    _policies().delete(_scope(), policy_id, _force(), entry_for_request)
    return "", 204


@bp.post("/v1/secret-policies/<policy_id>/generate")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/secret-policies"), summary="Generate fresh values from a recipe (stores nothing)")
def generate_preview(policy_id: str):
    return jsonify({"data": _policies().generate(_scope(), policy_id, entry_for_request)})


@endpoint("secrets:write", scope="secrets:write", status=201, authorize=permission("write"),
          summary="Write a new version generated from the secret's recipe (or body.secret_policy_id); returns metadata only")
def generate_secret(path: str):
    body = _optional_body(GenerateBody)
    rt = runtime()
    owner = _owner()
    policy_id = body.secret_policy_id
    with rt.db.session() as s:
        if policy_id is None:
            policy_id = s.scalar(f"SELECT s.secret_policy_id FROM secrets s WHERE {owner.where()} AND s.path = :path "
                                 "AND s.deleted_at IS NULL", path=path, **owner.params())
        if policy_id is None:
            raise ScaiVaultError("secret_policy_not_found", "the secret has no secret_policy_id; name one in the body",
                                 details={"path": path})
        from ..lifecycle.generators import generate

        data = generate(_policies().recipe(s, _scope(), policy_id))
    req = WriteRequest(data=data, secret_type=body.secret_type, metadata=body.metadata, secret_policy_id=policy_id)
    view, created = write_version(owner, path, req, g.identity.identity_id)
    return jsonify(view), (201 if created else 200)


@endpoint("secrets:write", scope="secrets:rotate", authorize=permission("rotate"),
          summary="Rotate one secret now through its attached rotation policy")
def rotate_secret(path: str):
    return jsonify(_rotation().rotate_path(_scope(), _owner(), path, entry_for_request))


bp.add_url_rule("/v1/secrets/<path:path>:generate", endpoint="generate_secret", view_func=generate_secret,
                methods=["POST"])
bp.add_url_rule("/v1/secrets/<path:path>:rotate", endpoint="rotate_secret", view_func=rotate_secret, methods=["POST"])


# ------------------------------------------------------------------ rotation policies
@bp.get("/v1/rotation/policies")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"), summary="List rotation policies",
          query={"active_only": "true: only active ones", "limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"})
def list_rotation_policies():
    active = bool_arg("active_only")
    return jsonify(_rotation().list_policies(_scope(), active, request.args.get("limit"), request.args.get("cursor")))


@bp.post("/v1/rotation/policies")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"),
          body=RotationPolicyBody, summary="Create a rotation policy", status=201)
def create_rotation_policy():
    return jsonify(_rotation().create(_scope(), _dump(g.body), g.identity.identity_id, entry_for_request)), 201


@bp.get("/v1/rotation/policies/<policy_id>")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"), summary="Get a rotation policy")
def get_rotation_policy(policy_id: str):
    return jsonify(_rotation().get(_scope(), policy_id))


@bp.patch("/v1/rotation/policies/<policy_id>")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"), body=RotationPolicyPatch, summary="Update a rotation policy")
def patch_rotation_policy(policy_id: str):
    return jsonify(_rotation().update(_scope(), policy_id, _dump(g.body), entry_for_request))


@bp.delete("/v1/rotation/policies/<policy_id>")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"),
          summary="Delete a rotation policy; its secrets are detached", status=204)
def delete_rotation_policy(policy_id: str):
    _rotation().delete(_scope(), policy_id, entry_for_request)
    return "", 204


@bp.post("/v1/rotation/policies/<policy_id>/enable")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"), summary="Resume a paused rotation policy")
def enable_rotation_policy(policy_id: str):
    return jsonify(_rotation().update(_scope(), policy_id, {}, entry_for_request, is_active=True))


@bp.post("/v1/rotation/policies/<policy_id>/disable")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"), summary="Pause a rotation policy (secrets stay attached)")
def disable_rotation_policy(policy_id: str):
    return jsonify(_rotation().update(_scope(), policy_id, {}, entry_for_request, is_active=False))


@bp.post("/v1/rotation/policies/<policy_id>/secrets")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"),
          body=AttachBody, summary="Attach a secret to a rotation policy", status=201)
def attach_secret(policy_id: str):
    path = g.body.secret_path
    validate_path(path)
    return jsonify(_rotation().attach(_scope(), _owner(), policy_id, path, entry_for_request)), 201


@bp.delete("/v1/rotation/policies/<policy_id>/secrets/<path:secret_path>")
@endpoint("policies", scope="admin", authorize=admin(sys="sys/rotation"),
          summary="Detach a secret (path URL-encoded or plain)", status=204)
def detach_secret(policy_id: str, secret_path: str):
    validate_path(secret_path)
    _rotation().detach(_scope(), _owner(), policy_id, secret_path, entry_for_request)
    return "", 204


@bp.post("/v1/rotation/policies/<policy_id>/rotate")
@endpoint("secrets:write", scope="secrets:rotate", authorize=permission("rotate", each=True),
          summary="Rotate the policy's secrets (or secret_paths) now")
def rotate_policy(policy_id: str):
    body = _optional_body(RotateBody)
    paths = body.secret_paths
    for path in paths or []:
        validate_path(path)
        require_grant(path, "rotate")
    if paths is None and not admin_allows("tenant"):
        raise ScaiVaultError("access_denied", "rotating every secret of a policy needs an admin role; name secret_paths")
    return jsonify(_rotation().rotate_now(_scope(), _owner(), policy_id, paths, entry_for_request))


@bp.get("/v1/rotation/policies/<policy_id>/history")
@endpoint("audit:read", scope="audit:read", authorize=admin(sys="sys/rotation"), summary="Rotation history of a policy",
          query={"status": ("success, failed or pending", {"type": "string", "enum": ["success", "failed", "pending"]}), "limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"})
def rotation_history(policy_id: str):
    args = request.args
    return jsonify(_rotation().history(_scope(), policy_id, args.get("status"), args.get("limit"), args.get("cursor")))


def _due():
    if not (g.identity.has_scope("secrets:rotate") or g.identity.has_scope("admin")):
        raise ScaiVaultError("insufficient_scope", "needs secrets:rotate or admin",
                             details={"required": ["secrets:rotate", "admin"]})
    args = request.args
    within = args.get("within_hours", "24")
    if not within.isdigit() or int(within) > DUE_MAX_HOURS:
        raise ScaiVaultError("invalid_request", f"within_hours must be an integer from 0 to {DUE_MAX_HOURS}")
    include_overdue = bool_arg("include_overdue", default=True)
    return jsonify(_rotation().due(_scope(), int(within), include_overdue, args.get("policy_id"),
                                   args.get("limit"), args.get("cursor")))


DUE_MAX_HOURS = 24 * 3660
DUE_QUERY = {"within_hours": "default 24", "include_overdue": "default true", "policy_id": "one policy only",
             "limit": "page size (default 100, at most 1000)", "cursor": "the previous page's cursor"}


@bp.get("/v1/rotation/due")
@endpoint("policies", authorize=admin(sys="sys/rotation"), summary="Secrets due (and overdue) for rotation",
          query=DUE_QUERY)
def rotation_due():
    return _due()


@bp.get("/v1/rotation/pending")
@endpoint("policies", authorize=admin(sys="sys/rotation"), summary="Deprecated alias of /v1/rotation/due",
          query=DUE_QUERY)
def rotation_pending():
    response = _due()
    response.headers["Deprecation"] = "true"
    response.headers["Link"] = '</v1/rotation/due>; rel="successor-version"'
    return response
