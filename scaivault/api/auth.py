"""/v1/auth: whoami, introspect and personal access tokens (spec/10 section 2.5, spec/15 6.3)."""
from __future__ import annotations

from datetime import datetime

from flask import Blueprint, g, jsonify, request
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt, field_validator

from .. import pagination
from ..pagination import timestamp
from .. import audit
from ..auth import personal_tokens, tenancy
from ..auth.identity import Identity
from ..config import parse_duration
from .auditing import entry_for_request
from .http import runtime
from .authorization import identity_only, role
from .pipeline import endpoint

bp = Blueprint("auth", __name__)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return timestamp(value)


class IntrospectBody(BaseModel):
    token: str = Field(min_length=1, max_length=16384)


Scope = Annotated[str, Field(pattern=r"^[A-Za-z0-9:_.-]{1,64}$")]
# seconds 60..31622400, or a duration within 1m..366d: 60s..9999999s, 1..9999m, 1..999h, 1..366d, 1..52w
TokenLifetime = Annotated[StrictInt, Field(ge=60, le=personal_tokens.MAX_LIFETIME_SECONDS)] | Annotated[
    str, Field(pattern=r"^(([6-9][0-9]|[1-9][0-9]{2,6})s|[1-9][0-9]{0,3}m|[1-9][0-9]{0,2}h"
                       r"|([1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d|([1-9]|[1-4][0-9]|5[0-2])w)$")]


class CreateTokenBody(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1, max_length=64)
    expires_in: TokenLifetime = Field(default="90d", validate_default=True, description="seconds (60..31622400) or a duration (1m..366d)")

    @field_validator("expires_in")
    @classmethod
    def _duration(cls, value: int | str) -> int:
        return value if isinstance(value, int) else parse_duration(value)


class WhoamiResponse(BaseModel):
    identity_id: str
    identity_type: str
    display_name: str | None
    tenant_id: str | None
    partner_id: str | None
    scopes: list[str]
    groups: list[str]
    roles: list[str]
    mfa_verified_at: str | None
    token_expires_at: str | None


class IntrospectResponse(BaseModel):
    active: bool
    identity_id: str | None = None
    identity_type: str | None = None
    tenant_id: str | None = None
    scopes: list[str] | None = None
    expires_at: str | None = None
    issued_at: str | None = None


class TokenView(BaseModel):
    id: str
    name: str
    scopes: list[str]
    status: str
    created_at: str
    expires_at: str
    revoked_at: str | None
    last_used_at: str | None


class CreatedToken(TokenView):
    token: str = Field(description="the skt_ value; shown only in this response")


class TokenList(BaseModel):
    tokens: list[TokenView]
    total: int
    cursor: str | None = None
    has_more: bool = False


def whoami_view(identity: Identity) -> dict:
    return {
        "identity_id": identity.identity_id,
        "identity_type": identity.identity_type,
        "display_name": identity.display_name,
        "tenant_id": identity.tenant_id,
        "partner_id": identity.partner_id,
        "scopes": sorted(identity.scopes),
        "groups": list(identity.groups),
        "roles": sorted(identity.roles),
        "mfa_verified_at": _iso(identity.mfa_verified_at),
        "token_expires_at": _iso(identity.expires_at),
    }


def _within_reach(caller: Identity, subject: Identity) -> bool:
    """Is the subject's home tenant (or, tenant-less, the platform) within an admin role of the caller?"""
    if tenancy.platform_reach(caller):
        return True
    return subject.tenant_id is not None and caller.admin_over(subject.tenant_id, subject.partner_id)


@bp.get("/v1/auth/whoami")
@endpoint("auth", tenant=False, response=WhoamiResponse, authorize=identity_only())
def whoami():
    """The caller's identity as derived from its token."""
    return jsonify(whoami_view(g.identity))


@bp.post("/v1/auth/introspect")
@endpoint("auth", scope="admin", tenant=False, body=IntrospectBody, response=IntrospectResponse,
          authorize=role("super_admin", "partner_admin", "tenant_admin"))
def introspect():
    """Whether a token is active, and whose it is; {"active": false} otherwise (HTTP 200)."""
    identity = runtime().authenticator.peek(g.body.token)
    # F17: a token outside the caller's admin reach is reported exactly like an inactive one
    if identity is None or not _within_reach(g.identity, identity):
        return jsonify({"active": False})
    return jsonify({
        "active": True,
        "identity_id": identity.identity_id,
        "identity_type": identity.identity_type,
        "tenant_id": identity.tenant_id,
        "scopes": sorted(identity.scopes),
        "expires_at": _iso(identity.expires_at),
        "issued_at": _iso(identity.issued_at),
    })


@bp.post("/v1/auth/tokens")
@endpoint("auth", tenant=False, body=CreateTokenBody, response=CreatedToken, status=201,
          authorize=identity_only())
def create_token():
    """Create a personal access token for the caller; the `token` value is shown only here."""
    rt = runtime()
    body: CreateTokenBody = g.body
    with rt.db.transaction() as s:
        row, value = personal_tokens.issue(s, g.identity, body.name, body.scopes, int(body.expires_in))
        audit.record(s, entry_for_request("token_create", extra={"token_id": row["id"], "scopes": list(row["scopes"])}))
    return jsonify({**personal_tokens.public_view(row), "token": value}), 201


@bp.get("/v1/auth/tokens")
@endpoint("auth", tenant=False, response=TokenList, query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"}, authorize=identity_only())
def list_tokens():
    """The caller's personal access tokens (never their values)."""
    with runtime().db.session() as s:
        rows = personal_tokens.list_for(s, g.identity)
    return jsonify(pagination.paginate("tokens", [personal_tokens.public_view(r) for r in rows], request.args.get("limit"),
                                       request.args.get("cursor"), total=len(rows)))


@bp.delete("/v1/auth/tokens/<token_id>")
@endpoint("auth", tenant=False, response=TokenView, authorize=identity_only())
def revoke_token(token_id: str):
    """Revoke one of the caller's personal access tokens; every instance refuses it within a second."""
    rt = runtime()
    with rt.db.transaction() as s:
        row = personal_tokens.revoke(s, g.identity, token_id[:64])
        audit.record(s, entry_for_request("token_revoke", extra={"token_id": row["id"]}))
    rt.authenticator.invalidate()
    return jsonify(personal_tokens.public_view(row))
