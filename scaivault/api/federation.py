"""/v1/federation/backends: external stores ScaiVault fronts (spec/50 sections 3.3-3.8).

Managing backends needs the federation:* scope and an admin role over the tenant; naming a
credentials secret in `config` also needs `read` on that path, so a backend can never be used
to read a secret its creator could not read. Reads of mapped paths go through
GET /v1/secrets/{path} like any read (scaivault.api.secrets).
"""
from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from .. import pagination
from ..errors import ScaiVaultError
from ..federation.service import CREDENTIAL_FIELDS
from ..policy.paths import validate_path
from ..services.secrets import SecretOwner
from .auditing import entry_for_request
from .authorization import admin, require_grant
from .http import runtime
from .pipeline import endpoint

bp = Blueprint("federation", __name__)

BackendType = Literal["hashicorp-vault", "aws-secrets-manager", "azure-key-vault", "google-secret-manager"]


class BackendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    type: BackendType
    config: dict[str, Any] = Field(description="endpoint/auth_method/auth_config_path/tls_verify (Vault), "
                                               "region/credentials_path/endpoint (AWS); direction, write_policy, "
                                               "delete_policy, timeout_seconds for every type")
    path_mapping: dict[str, str] = Field(description="ScaiVault glob -> backend path; a trailing /** is carried over")
    mode: Literal["proxy", "sync"]
    sync_interval: str | None = Field(default=None, max_length=16, description="sync mode: a duration, e.g. 15m")


class BackendPatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    config: dict[str, Any] | None = None
    path_mapping: dict[str, str] | None = None
    mode: Literal["proxy", "sync"] | None = None
    sync_interval: str | None = Field(default=None, max_length=16)


def _service():
    return runtime().federation


def _owner() -> SecretOwner:
    tenant = g.tenant
    if not tenant.partner_id:
        raise ScaiVaultError("tenant_not_found", "this tenant belongs to no partner yet")
    return SecretOwner(tenant.partner_id, tenant.tenant_id)


def _may_read_credentials(config: dict | None) -> None:
    """The caller must be allowed to read the secret whose credentials the backend will use."""
    for name in CREDENTIAL_FIELDS:
        path = (config or {}).get(name)
        if path is None:
            continue
        if not isinstance(path, str):
            raise ScaiVaultError("invalid_config", f"config.{name} must be a ScaiVault secret path")
        validate_path(path)
        require_grant(path, "read")


@bp.get("/v1/federation/backends")
@endpoint("federation", scope="federation:read", authorize=admin(sys="sys/federation"),
          summary="List the tenant's federation backends")
def list_backends():
    return jsonify(pagination.paginate("backends", _service().list(_owner()), request.args.get("limit"),
                                       request.args.get("cursor"), sort_key=lambda b: b["name"]))


@bp.post("/v1/federation/backends")
@endpoint("federation", scope="federation:write", authorize=admin(sys="sys/federation"),
          body=BackendBody, status=201,
          summary="Configure a backend; its credentials are read from a ScaiVault secret and tested")
def create_backend():
    _may_read_credentials(g.body.config)
    created = _service().create(_owner(), g.body.model_dump(), g.identity.identity_id, entry_for_request)
    return jsonify(created), 201


@bp.get("/v1/federation/backends/<backend_id>")
@endpoint("federation", scope="federation:read", authorize=admin(sys="sys/federation"),
          summary="One federation backend")
def get_backend(backend_id: str):
    return jsonify(_service().get(_owner(), backend_id))


@bp.patch("/v1/federation/backends/<backend_id>")
@endpoint("federation", scope="federation:write", authorize=admin(sys="sys/federation"),
          body=BackendPatchBody,
          summary="Change a backend (mode proxy <-> sync, mapping, interval, config)")
def patch_backend(backend_id: str):
    _may_read_credentials(g.body.config)
    return jsonify(_service().update(_owner(), backend_id, g.body.model_dump(exclude_unset=True),
                                     g.identity.identity_id, entry_for_request))


@bp.delete("/v1/federation/backends/<backend_id>")
@endpoint("federation", scope="federation:write", authorize=admin(sys="sys/federation"),
          summary="Remove a backend (synced secrets stay)")
def delete_backend(backend_id: str):
    return jsonify(_service().delete(_owner(), backend_id, entry_for_request))


@bp.get("/v1/federation/backends/<backend_id>/status")
@endpoint("federation", scope="federation:read", authorize=admin(sys="sys/federation"),
          summary="Reachability now, and the last sync")
def backend_status(backend_id: str):
    return jsonify(_service().status(_owner(), backend_id, entry_for_request))


@bp.post("/v1/federation/backends/<backend_id>/sync")
@endpoint("federation", scope="federation:write", authorize=admin(sys="sys/federation"),
          summary="Run a sync of this backend now")
def sync_backend(backend_id: str):
    return jsonify(_service().sync(_owner(), backend_id, trigger=f"manual:{g.identity.identity_id}"))


@bp.get("/v1/federation/backends/<backend_id>/conflicts")
@endpoint("federation", scope="federation:read", authorize=admin(sys="sys/federation"),
          summary="Paths that differ locally and in the backend")
def backend_conflicts(backend_id: str):
    conflicts = _service().conflicts(_owner(), backend_id)
    return jsonify(pagination.paginate("conflicts", conflicts, request.args.get("limit"), request.args.get("cursor"),
                                       sort_key=lambda c: c["path"]))
