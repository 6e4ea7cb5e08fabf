"""/v1/webhooks: signed outbound event deliveries (spec/30 section 5).

Every endpoint needs the `admin` scope and an admin role over the tenant (`authorize=admin()`).
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from ..services.secret_policies import TenantScope
from ..services.webhooks import WebhookService
from .auditing import entry_for_request
from .authorization import admin
from .http import runtime
from .pipeline import endpoint

bp = Blueprint("webhooks", __name__)


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    url: str = Field(description="https:// endpoint (http:// only with WEBHOOK_ALLOW_HTTP)")
    secret: str = Field(description="signing secret, write-only; 32+ characters recommended")
    events: list[str] = Field(description="event types, `prefix.*` or `*`")
    filters: dict[str, Any] | None = Field(default=None, description="path_prefix, secret_type, tags (any of)")
    enabled: bool | None = None


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    url: str | None = None
    secret: str | None = Field(default=None, description="a new signing secret; the old one is kept as previous_secret")
    previous_secret_ttl: str | None = Field(default=None, description="how long the previous secret is kept (default 24h)")
    events: list[str] | None = None
    filters: dict[str, Any] | None = None
    enabled: bool | None = None


def _service() -> WebhookService:
    rt = runtime()
    return WebhookService(rt.db, rt.keyring, rt.settings)


def _scope() -> TenantScope:
    return TenantScope(g.tenant.tenant_id, g.tenant.partner_id)


@bp.get("/v1/webhooks")
@endpoint("webhooks", scope="admin", authorize=admin(),
          summary="List webhooks", query={"limit": "1..200", "cursor": "from the previous page"})
def list_webhooks():
    return jsonify(_service().list(_scope(), request.args.get("limit"), request.args.get("cursor")))


@bp.post("/v1/webhooks")
@endpoint("webhooks", scope="admin", authorize=admin(), body=WebhookBody, summary="Create a webhook", status=201)
def create_webhook():
    body = g.body.model_dump(exclude_unset=True)
    return jsonify(_service().create(_scope(), body, g.identity.identity_id, entry_for_request)), 201


@bp.get("/v1/webhooks/<webhook_id>")
@endpoint("webhooks", scope="admin", authorize=admin(), summary="Get a webhook with statistics and its last delivery")
def get_webhook(webhook_id: str):
    return jsonify(_service().get(_scope(), webhook_id))


@bp.patch("/v1/webhooks/<webhook_id>")
@endpoint("webhooks", scope="admin", authorize=admin(),
          body=WebhookPatch, summary="Update a webhook; rotate its signing secret")
def patch_webhook(webhook_id: str):
    return jsonify(_service().update(_scope(), webhook_id, g.body.model_dump(exclude_unset=True), entry_for_request))


@bp.delete("/v1/webhooks/<webhook_id>")
@endpoint("webhooks", scope="admin", authorize=admin(), summary="Delete a webhook", status=204)
def delete_webhook(webhook_id: str):
    _service().delete(_scope(), webhook_id, entry_for_request)
    return "", 204


@bp.post("/v1/webhooks/<webhook_id>/test")
@endpoint("webhooks", scope="admin", authorize=admin(), summary="Send a signed webhook.test event now")
def test_webhook(webhook_id: str):
    return jsonify(_service().test(_scope(), webhook_id, g.identity.identity_id, g.get("request_id"), entry_for_request))


@bp.get("/v1/webhooks/<webhook_id>/deliveries")
@endpoint("webhooks", scope="admin", authorize=admin(), summary="The delivery log, newest first",
          query={"status": "success, failed, pending or skipped", "limit": "1..200", "cursor": "from the previous page"})
def list_deliveries(webhook_id: str):
    args = request.args
    return jsonify(_service().deliveries(_scope(), webhook_id, args.get("status"), args.get("limit"), args.get("cursor")))


@bp.post("/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
@endpoint("webhooks", scope="admin", authorize=admin(),
          summary="Queue the delivery's event again (a new delivery, same event_id)",
          status=202)
def redeliver(webhook_id: str, delivery_id: str):
    return jsonify(_service().redeliver(_scope(), webhook_id, delivery_id, entry_for_request)), 202
