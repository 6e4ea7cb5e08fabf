"""/v1/pki/acme (accounts, orders), /v1/dns/providers and the anonymous http-01 answer.

Authorisation (docs/decisions.md, PKI): accounts and DNS providers need pki:admin and a policy
grant on pki/acme/accounts/<name> or dns/providers/<name>; orders need pki:issue and `write` on
the secret path the certificate lands in (reading an order: `read` on it).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from ..audit import record_now
from ..auth import require_scope
from ..errors import ScaiVaultError
from ..policy.access import request_context
from ..policy.paths import validate_path
from ..services.secrets import SecretOwner
from .auditing import entry_for_request, record_denial
from .http import runtime
from .pipeline import endpoint

bp = Blueprint("acme", __name__)


class AccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    provider: str
    environment: str = "production"
    email: str | None = Field(default=None, max_length=254)
    directory_url: str | None = Field(default=None, max_length=2048)
    eab_kid: str | None = Field(default=None, max_length=512)
    eab_hmac_key: str | None = Field(default=None, max_length=512)


class OrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: str = Field(max_length=64)
    domains: list[str] = Field(min_length=1, max_length=100)
    challenge: str = "http-01"
    dns_provider_id: str | None = Field(default=None, max_length=64)
    secret_path: str = Field(max_length=512)
    key_type: str = "ec256"
    auto_renew: bool = False


class DnsProviderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    provider_type: str = Field(max_length=64)
    credentials: dict[str, Any] = Field(default_factory=dict, description="sealed; never returned")
    config: dict[str, Any] = Field(default_factory=dict, description="non-secret settings (server, port, ...)")
    managed_zones: list[str] = Field(min_length=1, max_length=100)
    verify: bool = True


# ------------------------------------------------------------------ guard (one place per module)
def _owner() -> SecretOwner:
    return SecretOwner(g.tenant.partner_id or "", g.tenant.tenant_id)


def _authorize(path: str, permission: str, category: str) -> None:
    rt = runtime()
    decision = rt.access.decide(g.identity, g.tenant, path, permission, request_context(g.identity, request.remote_addr))
    if not decision.allowed:
        error = decision.error(path)
        record_denial(rt, category, error, secret_path=path)
        raise error


def _require_any_scope(*scopes: str) -> None:
    if not any(g.identity.has_scope(s) for s in scopes):
        require_scope(g.identity, scopes[0])


def _audit_read(path: str, **extra: Any) -> None:
    record_now(runtime(), entry_for_request("pki_read", secret_path=path, extra=extra))


# ------------------------------------------------------------------ accounts
@bp.post("/v1/pki/acme/accounts")
@endpoint("pki:admin", scope="pki:admin", body=AccountBody, status=201,
          summary="Register an ACME account (the key is generated, sealed, never returned)")
def register_account():
    body: AccountBody = g.body
    _authorize(f"pki/acme/accounts/{body.name[:64]}", "write", "pki:admin")
    view = runtime().acme.register_account(_owner(), body.model_dump(), g.identity.identity_id, entry_for_request)
    return jsonify(view), 201


@bp.get("/v1/pki/acme/accounts")
@endpoint("pki:admin", scope="pki:admin", summary="List ACME accounts")
def list_accounts():
    accounts = runtime().acme.list_accounts(_owner())
    _audit_read("pki/acme/accounts", listed=len(accounts))
    return jsonify({"accounts": accounts})


@bp.get("/v1/pki/acme/accounts/<account_id>")
@endpoint("pki:admin", scope="pki:admin", summary="One ACME account")
def get_account(account_id: str):
    row = runtime().acme.account(_owner(), account_id)
    _authorize(f"pki/acme/accounts/{row['name']}", "read", "pki:admin")
    _audit_read(f"pki/acme/accounts/{row['name']}")
    return jsonify(runtime().acme.account_view(row))


# ------------------------------------------------------------------ orders
@bp.post("/v1/pki/acme/orders")
@endpoint("acme:order", scope="pki:issue", body=OrderBody, status=202,
          summary="Order a certificate; the work runs in the background (poll the order)")
def create_order():
    body: OrderBody = g.body
    validate_path(body.secret_path)
    _authorize(body.secret_path, "write", "pki:issue")
    view = runtime().acme.create_order(_owner(), body.model_dump(), g.identity.identity_id, entry_for_request)
    return jsonify(view), 202


@bp.get("/v1/pki/acme/orders/<order_id>")
@endpoint("acme:order", summary="One ACME order: pending, processing, valid or invalid (with the reason)")
def get_order(order_id: str):
    _require_any_scope("pki:issue", "pki:admin")
    row = runtime().acme.order(_owner(), order_id)
    _authorize(row["secret_path"], "read", "pki:issue")
    _audit_read(row["secret_path"], acme_order_id=row["id"])
    return jsonify(runtime().acme.order_view(row))


@bp.get("/v1/pki/acme/orders")
@endpoint("acme:order", summary="ACME orders whose secret path the caller may list",
          query={"limit": "1..200", "cursor": "from the previous page"})
def list_orders():
    _require_any_scope("pki:issue", "pki:admin")
    raw = request.args.get("limit") or "50"
    if not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise ScaiVaultError("invalid_request", "limit must be an integer 1..200")
    rt = runtime()
    policies = rt.access.tenant_policies(g.identity, g.tenant)
    ctx = request_context(g.identity, request.remote_addr)
    visible = (lambda p: True) if policies is None else (lambda p: policies.allows(p, "list", ctx))
    page = rt.acme.list_orders(_owner(), int(raw), request.args.get("cursor"), visible)
    _audit_read("pki/acme/orders", listed=len(page["orders"]))
    return jsonify(page)


# ------------------------------------------------------------------ DNS providers
@bp.post("/v1/dns/providers")
@endpoint("pki:admin", scope="pki:admin", body=DnsProviderBody, status=201,
          summary="Add a DNS provider for dns-01 (credentials sealed; verify=true checks them first)")
def create_dns_provider():
    body: DnsProviderBody = g.body
    _authorize(f"dns/providers/{body.name[:64]}", "write", "pki:admin")
    view = runtime().dns_providers.create(_owner(), body.model_dump(), g.identity.identity_id, entry_for_request)
    return jsonify(view), 201


@bp.get("/v1/dns/providers")
@endpoint("pki:admin", scope="pki:admin", summary="List DNS providers (never their credentials)")
def list_dns_providers():
    providers = runtime().dns_providers.list(_owner())
    _audit_read("dns/providers", listed=len(providers))
    return jsonify({"providers": providers})


@bp.get("/v1/dns/providers/<provider_id>")
@endpoint("pki:admin", scope="pki:admin", summary="One DNS provider (never its credentials)")
def get_dns_provider(provider_id: str):
    row = runtime().dns_providers.get(_owner(), provider_id)
    _authorize(f"dns/providers/{row['name']}", "read", "pki:admin")
    _audit_read(f"dns/providers/{row['name']}")
    return jsonify(runtime().dns_providers.view(row))


@bp.delete("/v1/dns/providers/<provider_id>")
@endpoint("pki:admin", scope="pki:admin", status=204, summary="Delete a DNS provider not used by open orders")
def delete_dns_provider(provider_id: str):
    row = runtime().dns_providers.get(_owner(), provider_id)
    _authorize(f"dns/providers/{row['name']}", "delete", "pki:admin")
    runtime().dns_providers.delete(_owner(), row["id"], entry_for_request)
    return Response(status=204)


# ------------------------------------------------------------------ http-01
@bp.get("/.well-known/acme-challenge/<token>")
@endpoint("pki:public", authenticated=False, tenant=False, summary="http-01 key authorization for a pending ACME challenge")
def http01(token: str):
    answer = runtime().acme.http_challenge(token)
    if answer is None:
        raise ScaiVaultError("not_found", "no pending ACME challenge has this token")
    return Response(answer, mimetype="application/octet-stream")
