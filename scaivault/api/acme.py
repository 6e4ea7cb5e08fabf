"""/v1/pki/acme (accounts, orders), /v1/dns/providers and the anonymous http-01 answer.

Authorisation (docs/decisions.md, PKI): accounts and DNS providers need pki:admin and a policy
grant on pki/acme/accounts/<name> or dns/providers/<name>; orders need pki:issue and `write` on
the secret path the certificate lands in (reading an order: `read` on it).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import pagination
from ..errors import ScaiVaultError
from ..policy.paths import validate_path
from ..services.acme import CHALLENGES, EAB_REQUIRED, ENVIRONMENTS, MAX_DOMAINS, ORDER_KEY_TYPES, PROVIDERS
from ..services.dns_providers import MAX_ZONES
from ..services.policies import page_limit
from .auditing import entry_for_request
from .http import runtime
from .authorization import permission, require_grant
from .params import SecretPath
from .pipeline import endpoint
from .pki_access import actor, audit_read, owner, require_any_scope, visible

bp = Blueprint("acme", __name__)


DomainName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"\S")]


class AccountBody(BaseModel):
    # custom needs its directory_url; eab_kid and eab_hmac_key go together; zerossl and google require them
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "dependentRequired": {"eab_kid": ["eab_hmac_key"], "eab_hmac_key": ["eab_kid"]},
        "allOf": [{"if": {"properties": {"provider": {"const": "custom"}}}, "then": {"required": ["directory_url"]}},
                  {"if": {"properties": {"provider": {"enum": list(EAB_REQUIRED)}}},
                   "then": {"required": ["eab_kid", "eab_hmac_key"]}}]})
    name: str = Field(min_length=1, max_length=64)
    provider: Literal[PROVIDERS]                                                                # type: ignore[valid-type]
    environment: Literal[ENVIRONMENTS] = "production"                                           # type: ignore[valid-type]
    email: str | None = Field(default=None, max_length=254, pattern="@")
    directory_url: str = Field(default=None, max_length=2048, pattern=r"^https?://\S+$",
                               description="provider custom only: the RFC 8555 directory")       # type: ignore[assignment]
    eab_kid: str = Field(default=None, min_length=1, max_length=512)                          # type: ignore[assignment]
    eab_hmac_key: str = Field(default=None, min_length=1, max_length=512)                     # type: ignore[assignment]

    @model_validator(mode="after")
    def _together(self) -> "AccountBody":
        given = self.model_fields_set
        if ("eab_kid" in given) != ("eab_hmac_key" in given):
            raise ValueError("eab_kid and eab_hmac_key go together")
        if self.provider == "custom" and "directory_url" not in given:
            raise ValueError("provider custom needs directory_url")
        if self.provider in EAB_REQUIRED and "eab_kid" not in given:
            raise ValueError(f"{self.provider} requires external account binding (eab_kid, eab_hmac_key)")
        return self


class OrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: str = Field(max_length=64)
    domains: list[DomainName] = Field(min_length=1, max_length=MAX_DOMAINS)
    challenge: Literal[CHALLENGES] = "http-01"                                                  # type: ignore[valid-type]
    dns_provider_id: str | None = Field(default=None, max_length=64)
    secret_path: SecretPath
    key_type: Literal[tuple(ORDER_KEY_TYPES)] = "ec256"                                         # type: ignore[valid-type]
    auto_renew: bool = False


class DnsProviderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    provider_type: str = Field(min_length=1, max_length=64, description="an installed DNS provider plugin")
    credentials: dict[str, Any] = Field(default_factory=dict, description="sealed; never returned")
    config: dict[str, Any] = Field(default_factory=dict, description="non-secret settings (server, port, ...)")
    managed_zones: list[DomainName] = Field(min_length=1, max_length=MAX_ZONES)
    verify: bool = True


# ------------------------------------------------------------------ accounts
@bp.post("/v1/pki/acme/accounts")
@endpoint("pki:admin", scope="pki:admin", body=AccountBody, status=201, errors=(502,),
          summary="Register an ACME account (the key is generated, sealed, never returned)",
          authorize=permission("write", each=True))
def register_account():
    body: AccountBody = g.body
    require_grant(f"pki/acme/accounts/{body.name[:64]}", "write")
    view = runtime().acme.register_account(owner(), body.model_dump(), actor(), entry_for_request)
    return jsonify(view), 201


@bp.get("/v1/pki/acme/accounts")
@endpoint("pki:admin", scope="pki:admin", summary="List ACME accounts", query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"}, authorize=permission("list", each=True))
def list_accounts():
    accounts = runtime().acme.list_accounts(owner())
    audit_read("pki/acme/accounts", listed=len(accounts))
    return jsonify(pagination.paginate("accounts", accounts, request.args.get("limit"), request.args.get("cursor")))


@bp.get("/v1/pki/acme/accounts/<account_id>")
@endpoint("pki:admin", scope="pki:admin", summary="One ACME account", authorize=permission("read", each=True))
def get_account(account_id: str):
    row = runtime().acme.account(owner(), account_id)
    require_grant(f"pki/acme/accounts/{row['name']}", "read")
    audit_read(f"pki/acme/accounts/{row['name']}")
    return jsonify(runtime().acme.account_view(row))


# ------------------------------------------------------------------ orders
@bp.post("/v1/pki/acme/orders")
@endpoint("acme:order", scope="pki:issue", body=OrderBody, status=202,
          summary="Order a certificate; the work runs in the background (poll the order)",
          authorize=permission("write", each=True))
def create_order():
    body: OrderBody = g.body
    validate_path(body.secret_path)
    require_grant(body.secret_path, "write")
    view = runtime().acme.create_order(owner(), body.model_dump(), actor(), entry_for_request)
    return jsonify(view), 202


@bp.get("/v1/pki/acme/orders/<order_id>")
@endpoint("acme:order", summary="One ACME order: pending, processing, valid or invalid (with the reason)",
          authorize=permission("read", each=True))
def get_order(order_id: str):
    require_any_scope("pki:issue", "pki:admin")
    row = runtime().acme.order(owner(), order_id)
    require_grant(row["secret_path"], "read")
    audit_read(row["secret_path"], acme_order_id=row["id"])
    return jsonify(runtime().acme.order_view(row))


@bp.get("/v1/pki/acme/orders")
@endpoint("acme:order", summary="ACME orders whose secret path the caller may list",
          query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"}, authorize=permission("list", each=True))
def list_orders():
    require_any_scope("pki:issue", "pki:admin")
    limit = page_limit(request.args.get("limit"))
    page = runtime().acme.list_orders(owner(), limit, request.args.get("cursor"), visible("list"))
    audit_read("pki/acme/orders", listed=len(page["orders"]))
    return jsonify(page)


# ------------------------------------------------------------------ DNS providers
@bp.post("/v1/dns/providers")
@endpoint("pki:admin", scope="pki:admin", body=DnsProviderBody, status=201,
          summary="Add a DNS provider for dns-01 (credentials sealed; verify=true checks them first)",
          authorize=permission("write", each=True))
def create_dns_provider():
    body: DnsProviderBody = g.body
    require_grant(f"dns/providers/{body.name[:64]}", "write")
    view = runtime().dns_providers.create(owner(), body.model_dump(), actor(), entry_for_request)
    return jsonify(view), 201


@bp.get("/v1/dns/providers")
@endpoint("pki:admin", scope="pki:admin", summary="List DNS providers (never their credentials)", query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"},
          authorize=permission("list", each=True))
def list_dns_providers():
    providers = runtime().dns_providers.list(owner())
    audit_read("dns/providers", listed=len(providers))
    return jsonify(pagination.paginate("providers", providers, request.args.get("limit"), request.args.get("cursor")))


@bp.get("/v1/dns/providers/<provider_id>")
@endpoint("pki:admin", scope="pki:admin", summary="One DNS provider (never its credentials)",
          authorize=permission("read", each=True))
def get_dns_provider(provider_id: str):
    row = runtime().dns_providers.get(owner(), provider_id)
    require_grant(f"dns/providers/{row['name']}", "read")
    audit_read(f"dns/providers/{row['name']}")
    return jsonify(runtime().dns_providers.view(row))


@bp.delete("/v1/dns/providers/<provider_id>")
@endpoint("pki:admin", scope="pki:admin", status=204, summary="Delete a DNS provider not used by open orders",
          authorize=permission("delete", each=True))
def delete_dns_provider(provider_id: str):
    row = runtime().dns_providers.get(owner(), provider_id)
    require_grant(f"dns/providers/{row['name']}", "delete")
    runtime().dns_providers.delete(owner(), row["id"], entry_for_request)
    return Response(status=204)


# ------------------------------------------------------------------ http-01
@bp.get("/.well-known/acme-challenge/<token>")
@endpoint("pki:public", authenticated=False, tenant=False, produces=("application/octet-stream",),
          summary="http-01 key authorization for a pending ACME challenge")
def http01(token: str):
    answer = runtime().acme.http_challenge(token)
    if answer is None:
        raise ScaiVaultError("not_found", "no pending ACME challenge has this token")
    return Response(answer, mimetype="application/octet-stream")
