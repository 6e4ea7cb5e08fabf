"""/v1/policies: access policies, their bindings, and the dry-run test (spec/20 section 5.9-5.10).

Policies are the authorisation layer itself, so managing them needs, on top of the policies:*
scope, an admin role within reach (tenant_admin, partner_admin, super_admin; partner-scope
policies need partner_admin) or a policy granting the call on the system path `sys/policies`
(the Terraform flow, issue 16). A policy can never grant more than its author holds.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import available_timezones

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ScaiVaultError
from ..inputs import UtcTimestamp
from ..policy.access import PARTNER_DEFAULT, request_context
from ..policy.engine import compile_policies
from ..policy.paths import validate_path
from ..policy.rules import MAX_RULES, PERMISSIONS
from ..policy.rules import RequestContext
from ..services.policies import IDENTITY_PREFIXES, PolicyOwner, PolicyService
from .auditing import entry_for_request, record_read
from .http import bool_arg, runtime
from .params import SECRET_PATH_RE, Duration, PatchBody
from ..policy.rules import DAYS
from .authorization import admin, identity_only
from .pipeline import endpoint

bp = Blueprint("policies", __name__)
SYS_POLICIES = "sys/policies"     # a policy granting read/write/delete here delegates policy management


# ------------------------------------------------------------------ bodies
# declared in the document (issue 16), enforced by the policy service with its own codes (invalid_policy, invalid_glob)
GLOB_PATTERN = r"^(\*\*|[a-z0-9_?*-]+)(/(\*\*|[a-z0-9_?*-]+)){0,9}$"
NAME_SCHEMA = {"minLength": 1, "maxLength": 128, "pattern": r"\S"}
_V4 = r"((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H = "[0-9a-fA-F]{1,4}"
_V6 = (f"(({_H}:){{7}}{_H}|({_H}:){{1,7}}:|({_H}:){{1,6}}:{_H}|({_H}:){{1,5}}(:{_H}){{1,2}}|({_H}:){{1,4}}(:{_H}){{1,3}}"
       f"|({_H}:){{1,3}}(:{_H}){{1,4}}|({_H}:){{1,2}}(:{_H}){{1,5}}|{_H}:(:{_H}){{1,6}}|:((:{_H}){{1,7}}|:))")
CIDR_RE = rf"^({_V4}(/([0-9]|[12][0-9]|3[0-2]))?|{_V6}(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?)$"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]"


class TimeWindow(BaseModel):
    """When a rule applies: these days, from `start` to `end` (HH:MM, end may be 24:00) in `timezone`."""
    model_config = ConfigDict(extra="forbid")
    days: list[Literal[DAYS]] = Field(default=None, min_length=1)                              # type: ignore[valid-type,assignment]
    start: str = Field(default=None, pattern=f"^{_TIME}$", description="default 00:00")        # type: ignore[assignment]
    end: str = Field(default=None, pattern=f"^({_TIME}|24:00)$", description="default 24:00")  # type: ignore[assignment]
    timezone: Literal[tuple(sorted(available_timezones()))] = Field(default=None, description="an IANA zone, default UTC")  # type: ignore[valid-type,assignment]

    @model_validator(mode="after")
    def _differ(self) -> "TimeWindow":
        if (self.start or "00:00") == (self.end or "24:00").replace("24:00", "00:00"):
            raise ValueError("start and end must differ")
        return self


class RuleConditions(BaseModel):
    """A rule's conditions, as scaivault.policy.rules.Conditions decides them."""
    model_config = ConfigDict(extra="forbid")
    ip_ranges: list[Annotated[str, Field(pattern=CIDR_RE, description="IPv4 or IPv6 CIDR")]] = Field(
        default=None, min_length=1)                                                              # type: ignore[assignment]
    require_mfa: bool = None                                                                     # type: ignore[assignment]
    mfa_max_age: Duration = None                                                                 # type: ignore[assignment]
    time_window: TimeWindow | list[TimeWindow] = Field(
        default=None, description="{days, start, end, timezone} or a non-empty list of them")    # type: ignore[assignment]


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path_pattern: str = Field(description="glob: * one segment (or part of one), ** any depth, ? one character",
                              json_schema_extra={"pattern": GLOB_PATTERN, "maxLength": 512, "not": {"anyOf": [
                                  {"pattern": r"(^|/)\*\*/\*\*(/|$)"},        # '**/**' is redundant
                                  {"pattern": r"[^/]\*\*|\*\*[^/]"}]}})          # '**' is a whole segment
    permissions: list[str] = Field(description="read, write, delete, list, rotate, admin (admin = all)",
                                   json_schema_extra={"minItems": 1, "items": {"enum": list(PERMISSIONS)}})
    effect: str | None = Field(default=None, description="allow (default) or deny; a matching deny always wins",
                               json_schema_extra={"enum": ["allow", "deny", None]})
    conditions: RuleConditions | None = Field(
        default=None, description="ip_ranges (CIDRs), require_mfa, mfa_max_age, time_window {days, start, end, timezone}")
    description: str | None = None


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field_codes: ClassVar[dict[str, str]] = {"rules": "invalid_policy", "name": "invalid_policy",
                                             "is_active": "invalid_policy"}
    name: str = Field(min_length=1, max_length=128, pattern=r"\S")
    description: str | None = Field(default=None, max_length=2000)
    rules: list[RuleBody] = Field(min_length=1, max_length=MAX_RULES)
    scope: Literal["tenant", "partner"] | None = None
    is_active: bool = Field(default=None, description="default true; never null")   # type: ignore[assignment]


class PolicyPatchBody(PatchBody):
    # omitted members stay as they are; none of these may be null (description: null clears it)
    field_codes: ClassVar[dict[str, str]] = PolicyBody.field_codes
    name: str = Field(default=None, min_length=1, max_length=128, pattern=r"\S")            # type: ignore[assignment]
    description: str | None = Field(default=None, max_length=2000)
    rules: list[RuleBody] = Field(default=None, min_length=1, max_length=MAX_RULES)          # type: ignore[assignment]
    is_active: bool = Field(default=None)                                                    # type: ignore[assignment]


class BindingBody(BaseModel):
    # identity_id's prefix matches identity_type (the service refuses a mismatch with 400 invalid_policy)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        {"if": {"properties": {"identity_type": {"const": kind}}, "required": ["identity_type"]},
         "then": {"properties": {"identity_id": {"pattern": f"^{prefix}"}}}}
        for kind, prefix in IDENTITY_PREFIXES.items()]})
    identity_type: str = Field(description="user, service_account, group or dynamic_engine",
                               json_schema_extra={"enum": ["user", "service_account", "group", "dynamic_engine"]})
    identity_id: str = Field(description="user:<email>, sa:<name>, group:<name> or dynamic:<engine> (matching identity_type)",
                             json_schema_extra={"pattern": r"^(user|sa|group|dynamic):[^\u0000]+$", "maxLength": 320})
    expires_at: UtcTimestamp | None = Field(default=None, description="the binding lapses at this time")


class TestContext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_ip: str | None = None
    mfa_verified: bool = False
    timestamp: UtcTimestamp | None = None


class PolicyTestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity_id: str | None = Field(default=None, max_length=320, pattern=r"^[^\x00]+$",
                                    description="defaults to the caller")
    groups: list[Annotated[str, Field(max_length=320, pattern=r"^group:[^\x00]+$")]] | None = Field(
        default=None, max_length=200, description="group:<name> ids to evaluate as a member of")
    path: str = Field(pattern=SECRET_PATH_RE, max_length=512)
    permission: Literal["read", "write", "delete", "list", "rotate", "admin"]
    partner_secret: bool = False
    context: TestContext = TestContext()


# ------------------------------------------------------------------ responses (documentation)
class BindingView(BaseModel):
    id: str
    policy_id: str
    identity_type: str
    identity_id: str
    expires_at: str | None
    created_at: str
    created_by: str | None


class PolicyView(BaseModel):
    id: str
    name: str
    description: str
    scope: str
    rules: list[dict[str, Any]]
    is_active: bool
    tenant_id: str | None
    partner_id: str
    created_at: str
    updated_at: str
    bindings: list[BindingView] | None = None


class PolicyListItem(BaseModel):
    id: str
    name: str
    description: str
    scope: str
    rule_count: int
    binding_count: int
    is_active: bool
    created_at: str
    updated_at: str


class PolicyListView(BaseModel):
    policies: list[PolicyListItem]
    cursor: str | None
    has_more: bool


class BindingListView(BaseModel):
    bindings: list[BindingView]
    cursor: str | None
    has_more: bool


class DeletedView(BaseModel):
    id: str
    deleted: bool


class PolicyTestView(BaseModel):
    allowed: bool
    identity_id: str
    path: str
    permission: str
    code: str | None = None
    decision: dict[str, Any]
    evaluated_policies: list[dict[str, Any]]


# ------------------------------------------------------------------ helpers
def _service() -> PolicyService:
    rt = runtime()
    return PolicyService(rt.db, rt.policy_cache)


def _owner() -> PolicyOwner:
    return PolicyOwner(g.tenant.tenant_id, g.tenant.partner_id)


def _may_change(policy: dict) -> None:
    """Partner-scope policies are changed by partner admins only."""
    if policy["tenant_id"] is None and not runtime().access.admin_over_partner(g.identity, policy["partner_id"]):
        raise ScaiVaultError("access_denied", "partner-scope policies are managed by partner admins")


def _may_grant(rules: Any) -> None:
    """A caller managing policies through a delegated grant passes on only what it holds itself."""
    rt = runtime()
    missing = rt.access.ungrantable(g.identity, g.tenant, rules, request_context(g.identity, request.remote_addr))
    if missing:
        raise ScaiVaultError("access_denied", "a policy may not grant more than its author holds",
                             details={"not_held": missing[:20]})


def _may_bind(policy: dict) -> None:
    _may_change(policy)
    _may_grant(policy["rules"])


def _audit_read(extra: dict) -> None:
    """Policies are authorisation data: reading them is audited (`policy_read`), before they are answered."""
    record_read(runtime(), "policy_read", extra=extra)


def _dump(model: BaseModel) -> dict:
    return model.model_dump(exclude_unset=True)


# ------------------------------------------------------------------ views
@bp.get("/v1/policies")
@endpoint("policies", scope="policies:read", response=PolicyListView, summary="List policies",
          query={"scope": "tenant or partner", "include_inactive": "true: inactive ones too",
                 "limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"},
          authorize=admin(sys=SYS_POLICIES))
def list_policies():
    args = request.args
    include_inactive = bool_arg("include_inactive")
    listing = _service().list(_owner(), scope=args.get("scope"), include_inactive=include_inactive,
                              limit=args.get("limit"), cursor=args.get("cursor"))
    _audit_read({"endpoint": "list", "count": len(listing["policies"])})
    return jsonify(listing)


@bp.post("/v1/policies")
@endpoint("policies", scope="policies:write", body=PolicyBody, response=PolicyView, summary="Create a policy",
          status=201,
          authorize=admin(sys=SYS_POLICIES))
def create_policy():
    body = _dump(g.body)
    if body.get("scope") == "partner" and not runtime().access.admin_over_partner(g.identity, g.tenant.partner_id):
        raise ScaiVaultError("access_denied", "partner-scope policies are created by partner admins")
    _may_grant(body["rules"])
    return jsonify(_service().create(_owner(), body, g.identity.identity_id, entry_for_request)), 201


@bp.get("/v1/policies/<policy_id>")
@endpoint("policies", scope="policies:read", response=PolicyView, summary="Get a policy with its rules and bindings",
          authorize=admin(sys=SYS_POLICIES))
def get_policy(policy_id: str):
    policy = _service().get(_owner(), policy_id)
    _audit_read({"endpoint": "get", "policy_id": policy["id"]})
    return jsonify(policy)


@bp.put("/v1/policies/<policy_id>")
@endpoint("policies", scope="policies:write", body=PolicyBody, response=PolicyView,
          summary="Replace a policy's name, description and rules (bindings are kept)",
          authorize=admin(sys=SYS_POLICIES))
def replace_policy(policy_id: str):
    _may_grant(_dump(g.body)["rules"])
    return jsonify(_service().update(_owner(), policy_id, _dump(g.body), g.identity.identity_id, entry_for_request,
                                     partial=False, may_change=_may_change))


@bp.patch("/v1/policies/<policy_id>")
@endpoint("policies", scope="policies:write", body=PolicyPatchBody, response=PolicyView,
          summary="Change some fields of a policy",
          authorize=admin(sys=SYS_POLICIES))
def patch_policy(policy_id: str):
    if g.body.rules is not None:
        _may_grant(_dump(g.body)["rules"])
    return jsonify(_service().update(_owner(), policy_id, _dump(g.body), g.identity.identity_id, entry_for_request,
                                     partial=True, may_change=_may_change))


@bp.delete("/v1/policies/<policy_id>")
@endpoint("policies", scope="policies:write", response=DeletedView,
          summary="Delete a policy (409 policy_in_use while bound, unless force=true)",
          query={"force": "true: remove the bindings too"},
          authorize=admin(sys=SYS_POLICIES))
def delete_policy(policy_id: str):
    force = bool_arg("force")
    return jsonify(_service().delete(_owner(), policy_id, force, entry_for_request, _may_change))


@bp.get("/v1/policies/<policy_id>/bindings")
@endpoint("policies", scope="policies:read", response=BindingListView, summary="List a policy's bindings",
          query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"},
          authorize=admin(sys=SYS_POLICIES))
def list_bindings(policy_id: str):
    bindings = _service().bindings(_owner(), policy_id, request.args.get("limit"), request.args.get("cursor"))
    _audit_read({"endpoint": "bindings", "policy_id": policy_id[:64]})
    return jsonify(bindings)


@bp.post("/v1/policies/<policy_id>/bindings")
@endpoint("policies", scope="policies:write", body=BindingBody, response=BindingView,
          summary="Bind a policy to a user, service account or group", status=201,
          authorize=admin(sys=SYS_POLICIES))
def create_binding(policy_id: str):
    return jsonify(_service().bind(_owner(), policy_id, _dump(g.body), g.identity.identity_id, entry_for_request,
                                   _may_bind)), 201


@bp.delete("/v1/policies/<policy_id>/bindings/<binding_id>")
@endpoint("policies", scope="policies:write", response=DeletedView, summary="Remove a binding",
          authorize=admin(sys=SYS_POLICIES))
def delete_binding(policy_id: str, binding_id: str):
    return jsonify(_service().unbind(_owner(), policy_id, binding_id, entry_for_request, _may_change))


@bp.post("/v1/policies/test")
@endpoint("policies:test", scope="policies:read", body=PolicyTestBody, response=PolicyTestView,
          summary="Dry run: would this identity get this permission on this path, and by which rule (not audited)",
          authorize=identity_only())
def test_policy():
    body: PolicyTestBody = g.body
    identity = g.identity
    rt = runtime()
    target = body.identity_id or identity.identity_id
    is_self = target == identity.identity_id
    # F9: testing someone else, or groups one is not in, shows other policies' rules: admins only
    if not rt.access.admin_over_tenant(identity, g.tenant):
        foreign_groups = sorted(set(body.groups or ()) - set(identity.groups))
        if not is_self or foreign_groups:
            raise ScaiVaultError("access_denied", "testing another identity or other groups needs an admin role "
                                 "for this tenant", details={"groups": foreign_groups} if foreign_groups else None)
        body.groups = None   # a non-admin is tested with the groups it really has
    validate_path(body.path)
    groups = tuple(body.groups) if body.groups is not None else (identity.groups if is_self else ())
    bad = [grp for grp in groups if not isinstance(grp, str) or not grp.startswith("group:")]
    if bad:
        raise ScaiVaultError("invalid_request", "groups must be group:<name> ids")
    now = body.context.timestamp or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    ctx = RequestContext(source_ip=body.context.source_ip,
                         mfa_verified_at=now if body.context.mfa_verified else None, now=now)
    ids = tuple(sorted({target, *groups}))
    service = PolicyService(rt.db)
    owner = _owner()
    evaluated = service.evaluated_policies(owner, ids, partner_only=body.partner_secret)
    if is_self and (rt.access.partner_policies(identity, g.tenant, body.permission) is None if body.partner_secret
                    else rt.access.admin_over_tenant(identity, g.tenant)):
        explained = {"allowed": True, "via": "role", "reason": "granted by an admin role"}
    else:
        rows = [(p["policy_id"], p["name"], p["rules"], None) for p in evaluated]
        compiled = compile_policies(rows)
        explained = compiled.decide(body.path, body.permission, ctx).explain()
        if body.partner_secret and body.permission in ("read", "list") and g.tenant.partner_id:
            # shared with the partner's tenants unless a partner-scope deny rule matches (issue 16)
            explained = (compiled.deny_decision(body.path, body.permission, ctx) or PARTNER_DEFAULT).explain()
        if body.partner_secret and body.permission not in ("read", "list"):
            explained = {"allowed": False, "via": "role", "code": "access_denied",
                         "reason": "partner secrets are written and deleted by partner admins only"}
    out = {"allowed": explained["allowed"], "identity_id": target, "groups": list(groups), "path": body.path,
           "permission": body.permission, "decision": explained, "evaluated_policies": evaluated}
    if not explained["allowed"]:
        out["code"] = explained.get("code")
    return jsonify(out)   # spec/20 5.10 and acceptance scenario 7: the dry run writes no audit entry

