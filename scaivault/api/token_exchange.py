"""/v1/auth/exchange (RFC 8693 token exchange) and /v1/auth/trust (the trust rules behind it).

The exchange endpoint is unauthenticated: the foreign subject token is the credential. Trust
rules are tenant objects managed by the tenant's admins (scope `admin` and `authorize=admin()`).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from ..errors import ScaiVaultError, ValidationFailed
from .auditing import entry_for_request
from .authorization import admin
from .http import json_body, runtime
from .pipeline import endpoint

bp = Blueprint("token_exchange", __name__)


class ExchangeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    grant_type: str | None = Field(default=None, description="urn:ietf:params:oauth:grant-type:token-exchange")
    subject_token: str = Field(min_length=1, max_length=16384, description="the foreign JWT")
    subject_token_type: str = Field(description="urn:ietf:params:oauth:token-type:jwt")
    scopes: list[str] | None = Field(default=None, description="wanted scopes (at most the rule's max_scopes)")
    scope: str | None = Field(default=None, description="RFC 8693 form: space-separated scopes")
    rule: str | None = Field(default=None, max_length=64, description="name of the trust rule to use (optional)")
    tenant_id: str | None = Field(default=None, max_length=64, description="the rule's tenant (optional)")


class ExchangeResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    issued_token_type: str
    scope: str


class TrustRuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    issuer: str | None = Field(default=None, description="the foreign issuer (keys found by OIDC discovery)")
    jwks_url: str | None = Field(default=None, description="overrides discovery")
    audience: str | None = Field(default=None, description="the aud the foreign tokens must carry")
    conditions: dict[str, str] | None = Field(default=None, description="claim -> required value (glob allowed)")
    identity: str | None = Field(default=None, description="sa:<name> in this tenant")
    max_scopes: list[str] | None = None
    ttl: StrictStr | StrictInt | None = Field(default=None, description="lifetime of the minted token (default 1h, at most 12h)")


def _exchange_body() -> ExchangeBody:
    if request.mimetype == "application/x-www-form-urlencoded":
        raw: dict[str, Any] = request.form.to_dict()
    else:
        raw = json_body()
    try:
        return ExchangeBody.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed({".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}) from None


@bp.post("/v1/auth/exchange")
@endpoint("auth", authenticated=False, tenant=False, response=ExchangeResponse,
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
@endpoint("auth", scope="admin", authorize=admin(), summary="List the tenant's trust rules")
def list_rules():
    return jsonify(runtime().trust_rules.list(g.tenant.tenant_id))


@bp.post("/v1/auth/trust")
@endpoint("auth", scope="admin", authorize=admin(), body=TrustRuleBody, status=201, summary="Create a trust rule")
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
