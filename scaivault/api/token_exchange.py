"""/v1/auth/exchange (RFC 8693 token exchange) and /v1/auth/trust (the trust rules behind it).

The exchange endpoint is unauthenticated: the foreign subject token is the credential. Trust
rules are tenant objects managed by the tenant's admins (scope `admin` and `authorize=admin()`).
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from .. import pagination
from ..auth.exchange import SUBJECT_TOKEN_TYPES
from ..auth.scopes import ALL_SCOPES
from ..errors import ScaiVaultError
from ..services.trust_rules import CLAIM_RE, FORBIDDEN_SCOPES, IDENTITY_RE, MAX_CONDITIONS, TTL_BOUNDS
from ..services.trust_rules import NAME_RE as TRUST_NAME_RE
from .auditing import entry_for_request
from .authorization import admin
from .http import json_body, runtime
from .pipeline import endpoint, validation_failure

bp = Blueprint("token_exchange", __name__)


class ExchangeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    field_codes: ClassVar[dict[str, str]] = {"grant_type": "invalid_request", "subject_token_type": "invalid_request"}
    grant_type: Literal["urn:ietf:params:oauth:grant-type:token-exchange"] | None = None
    subject_token: str = Field(min_length=1, max_length=16384, description="the foreign JWT")
    subject_token_type: Literal[SUBJECT_TOKEN_TYPES] = Field(description="urn:ietf:params:oauth:token-type:jwt")  # type: ignore[valid-type]
    scopes: list[str] | None = Field(default=None, description="wanted scopes (at most the rule's max_scopes)")
    scope: str | None = Field(default=None, description="RFC 8693 form: space-separated scopes")
    rule: str | None = Field(default=None, max_length=64, description="name of the trust rule to use (optional)")
    tenant_id: str | None = Field(default=None, max_length=64, description="the rule's tenant (optional)")


class ExchangeForm(BaseModel):
    """The RFC 8693 form: the same members as strings (`scope` space-separated)."""
    field_codes: ClassVar[dict[str, str]] = {"grant_type": "invalid_request", "subject_token_type": "invalid_request"}
    grant_type: Literal["urn:ietf:params:oauth:grant-type:token-exchange"] = None             # type: ignore[assignment]
    subject_token: str = Field(min_length=1, max_length=16384)
    subject_token_type: Literal[SUBJECT_TOKEN_TYPES]                                            # type: ignore[valid-type]
    scope: str = Field(default=None, max_length=4096)                                          # type: ignore[assignment]
    rule: str = Field(default=None, max_length=64)                                             # type: ignore[assignment]
    tenant_id: str = Field(default=None, max_length=64)                                        # type: ignore[assignment]


class ExchangeResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    issued_token_type: str
    scope: str


_ISSUER_URL = r"^(https://[^\s/?#@]+|http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?)(/[^\s]*)?$"
IssuerUrl = Annotated[str, Field(pattern=_ISSUER_URL, max_length=512,
                                 description="https, or http to a loopback address (a local issuer or sidecar)")]
RuleName = Annotated[str, Field(pattern=TRUST_NAME_RE.pattern)]
Claim = Annotated[str, Field(pattern=CLAIM_RE.pattern)]
ClaimValue = Annotated[str, Field(min_length=1, max_length=256, description="required value (glob allowed)")]
RuleScope = Literal[tuple(sorted(set(ALL_SCOPES) - FORBIDDEN_SCOPES))]  # type: ignore[valid-type]
# 1..720 minutes or 1..12 hours, or seconds 60..43200
RuleTtl = Annotated[str, Field(pattern=r"^(([1-9]|[1-9][0-9]|[1-6][0-9]{2}|7[01][0-9]|720)m|([1-9]|1[0-2])h)$")] | \
    Annotated[StrictInt, Field(ge=TTL_BOUNDS[0], le=TTL_BOUNDS[1])]


class TrustRuleBody(BaseModel):
    """A trust rule (create: every member but jwks_url and ttl is required; PATCH: any, none null but jwks_url)."""
    model_config = ConfigDict(extra="forbid")
    field_codes: ClassVar[dict[str, str]] = {**{f: "invalid_config" for f in (
        "name", "issuer", "jwks_url", "audience", "conditions", "identity", "max_scopes")}, "ttl": "invalid_duration"}
    codes_for_missing: ClassVar[bool] = True
    name: RuleName = None                                                                      # type: ignore[assignment]
    issuer: IssuerUrl = Field(default=None, description="the foreign issuer (keys found by OIDC discovery)")  # type: ignore[assignment]
    jwks_url: IssuerUrl | None = Field(default=None, max_length=1024, description="overrides discovery")
    audience: str = Field(default=None, min_length=1, max_length=256,
                          description="the aud the foreign tokens must carry")                # type: ignore[assignment]
    conditions: dict[Claim, ClaimValue] = Field(default=None, min_length=1, max_length=MAX_CONDITIONS,
                                                description="claim -> required value (glob allowed)",
                                                json_schema_extra={"propertyNames": {"pattern": CLAIM_RE.pattern}})  # type: ignore[assignment]
    identity: str = Field(default=None, pattern=IDENTITY_RE.pattern, description="sa:<name> in this tenant")  # type: ignore[assignment]
    max_scopes: list[RuleScope] = Field(default=None, min_length=1)                           # type: ignore[assignment]
    ttl: RuleTtl = Field(default=None, description="lifetime of the minted token (default 1h, at most 12h)")  # type: ignore[assignment]


class TrustRuleCreate(TrustRuleBody):
    name: RuleName
    issuer: IssuerUrl
    audience: str = Field(min_length=1, max_length=256)
    conditions: dict[Claim, ClaimValue] = Field(min_length=1, max_length=MAX_CONDITIONS,
                                                json_schema_extra={"propertyNames": {"pattern": CLAIM_RE.pattern}})
    identity: str = Field(pattern=IDENTITY_RE.pattern)
    max_scopes: list[RuleScope] = Field(min_length=1)


def _exchange_body() -> ExchangeBody:
    model: type[BaseModel] = ExchangeBody
    try:
        if request.mimetype == "application/x-www-form-urlencoded":
            model = ExchangeForm
            form = ExchangeForm.model_validate(request.form.to_dict())
            return ExchangeBody.model_validate(form.model_dump(exclude_unset=True))
        return ExchangeBody.model_validate(json_body())
    except ValidationError as exc:
        raise validation_failure(model, exc) from None


@bp.post("/v1/auth/exchange")
@endpoint("auth", authenticated=False, tenant=False, response=ExchangeResponse, body_doc=ExchangeBody,
          form_doc=ExchangeForm, errors=(401,),
          summary="Exchange a foreign workload JWT (GitHub Actions, Kubernetes) for a short-lived ScaiVault token")
def exchange():
    body = _exchange_body()
    if body.grant_type not in (None, "urn:ietf:params:oauth:grant-type:token-exchange"):
        raise ScaiVaultError("invalid_request", "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange")
    scopes = body.scopes if body.scopes is not None else (body.scope.split() if body.scope else None)
    tenant = request.environ.get("scaivault.path_tenant") or request.headers.get("X-Tenant-ID") or body.tenant_id
    meta = {"source_ip": request.remote_addr, "user_agent": request.headers.get("User-Agent"),
            "request_id": g.get("request_id")}
    result = runtime().token_exchange.exchange(body.subject_token, body.subject_token_type, scopes, tenant, body.rule, meta)
    return jsonify(result)


# ------------------------------------------------------------------ trust rules
def _body() -> dict[str, Any]:
    return g.body.model_dump(exclude_unset=True)


@bp.get("/v1/auth/trust")
@endpoint("auth", scope="admin", authorize=admin(), summary="List the tenant's trust rules",
          query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"})
def list_rules():
    rules = runtime().trust_rules.list(g.tenant.tenant_id)["rules"]
    return jsonify(pagination.paginate("rules", rules, request.args.get("limit"), request.args.get("cursor")))


@bp.post("/v1/auth/trust")
@endpoint("auth", scope="admin", authorize=admin(), body=TrustRuleCreate, status=201, summary="Create a trust rule")
def create_rule():
    t = g.tenant
    view = runtime().trust_rules.create(t.tenant_id, t.partner_id, _body(), g.identity.scopes,
                                        g.identity.identity_id, entry_for_request)
    return jsonify(view), 201


@bp.get("/v1/auth/trust/<rule_id>")
@endpoint("auth", scope="admin", authorize=admin(), summary="Read a trust rule (by id or name)")
def get_rule(rule_id: str):
    return jsonify(runtime().trust_rules.get(g.tenant.tenant_id, rule_id))


@bp.patch("/v1/auth/trust/<rule_id>")
@endpoint("auth", scope="admin", authorize=admin(), body=TrustRuleBody,
          summary="Update a trust rule; tokens minted under changed terms stop working")
def update_rule(rule_id: str):
    return jsonify(runtime().trust_rules.update(g.tenant.tenant_id, rule_id, _body(), g.identity.scopes,
                                                g.identity.identity_id, entry_for_request))


@bp.delete("/v1/auth/trust/<rule_id>")
@endpoint("auth", scope="admin", authorize=admin(), summary="Delete a trust rule and every token minted under it")
def delete_rule(rule_id: str):
    return jsonify(runtime().trust_rules.delete(g.tenant.tenant_id, rule_id, entry_for_request))
