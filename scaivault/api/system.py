"""System administration: loaded plugins, key hierarchy status and key rotation (admin only)."""
from __future__ import annotations

from typing import Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from .. import inputs
from ..audit import record_now
from ..crypto.rotation import rotate_root, rotate_tenant_key
from ..crypto.status import key_status
from ..errors import ScaiVaultError
from ..plugins import describe_plugins
from .auditing import entry_for_request
from .http import runtime
from .authorization import role
from .pipeline import endpoint

bp = Blueprint("system", __name__)


class RotateKeysBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["root", "tenant"] = "root"
    tenant_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    partner_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


@bp.get("/v1/system/plugins")
@endpoint("system", scope="admin", tenant=False, authorize=role("super_admin", "partner_admin"))
def list_plugins():
    """Loaded plugins, their versions and what each provides."""
    rt = runtime()
    return jsonify({"plugins": describe_plugins(rt.plugins),
                    "selected": {"kms_provider": rt.settings.kms_provider,
                                 "storage_provider": rt.settings.storage_provider}})


@bp.get("/v1/system/keys")
@endpoint("system", scope="admin", tenant=False, authorize=role("super_admin", "partner_admin"))
def list_keys():
    """Root, partner and tenant key versions and status; never key material."""
    rt = runtime()
    # a partner admin sees the keys of its own partner only
    partner = None if g.identity.is_super_admin else (g.identity.partner_id or "")
    limit = inputs.parse_int(request.args.get("limit", "100"), "limit", low=1, high=1000)
    if g.identity.is_super_admin and request.args.get("partner_id"):
        partner = request.args["partner_id"]
    status = key_status(rt.db, partner_id=partner, limit=limit)
    health = rt.keyring.health()
    if not g.identity.is_super_admin:
        status["roots"] = [{k: r[k] for k in ("version", "status", "activated_at")} for r in status["roots"]]
        status["rotations"] = [r for r in status["rotations"] if r["kind"] == "tenant"
                               and r["target"].startswith(f"{partner}/")]
    return jsonify({"encryption": {k: health.get(k) for k in ("status", "key_status", "root_version", "last_rotation")},
                    **status})


@bp.post("/v1/system/keys/rotate")
@endpoint("system", scope="admin", tenant=False, body=RotateKeysBody, authorize=role("super_admin", "partner_admin"))
def rotate_keys():
    """Rotate the root (re-wrap partner keys) or one tenant's key (re-wrap its data keys)."""
    body: RotateKeysBody = g.body
    rt = runtime()
    actor = g.identity.identity_id
    partner = None
    if body.scope == "root":
        if not g.identity.is_super_admin:
            raise ScaiVaultError("forbidden", "a root rotation needs the role super_admin",
                                 details={"required_roles": ["super_admin"]})
        if body.tenant_id or body.partner_id:
            raise ScaiVaultError("invalid_request", "a root rotation takes no tenant_id or partner_id")
    else:
        partner = _rotation_partner(rt, body)
    try:
        if body.scope == "root":
            result = rotate_root(rt.keyring, actor=actor)
        else:
            result = rotate_tenant_key(rt.keyring, partner, body.tenant_id, actor=actor)
    except ScaiVaultError as exc:
        # a failed (resumable) rotation is on the record too
        _audit(rt, body, partner, False, {"key_rotation": {"kind": body.scope, "error": exc.code}})
        raise
    _audit(rt, body, partner, True, {"key_rotation": result.as_dict()})
    return jsonify(result.as_dict())


def _rotation_partner(rt, body: RotateKeysBody) -> str:
    """The partner whose tenant key rotates: the tenant must exist, belong to it, and be in the caller's reach.

    Anything else is one uniform 404, so a partner admin learns nothing about other partners' tenants.
    """
    identity = g.identity
    if body.tenant_id is None:
        partner = body.partner_id or identity.partner_id
        if not partner:
            raise ScaiVaultError("invalid_request", "partner_id is required for a tenant key rotation")
        if not identity.is_super_admin and not identity.admin_over(None, partner):
            raise ScaiVaultError("tenant_not_found", "no such partner")
        return partner
    row = rt.authenticator.tenant(body.tenant_id)
    partner = row["partner_id"] if row is not None and row["deleted_at"] is None else None
    if (partner is None or (body.partner_id is not None and body.partner_id != partner)
            or not (identity.is_super_admin or identity.admin_over(None, partner))):
        raise ScaiVaultError("tenant_not_found", "no such tenant", details={"tenant_id": body.tenant_id})
    return partner


def _audit(rt, body: RotateKeysBody, partner: str | None, success: bool, extra: dict) -> None:
    entry = entry_for_request("rotate", success=success, extra=extra)
    entry.tenant_id = body.tenant_id
    entry.partner_id = partner
    record_now(rt, entry)
