"""/v1/webhooks: signed outbound event deliveries (spec/30 section 5).

Every endpoint needs the `admin` scope and an admin role over the tenant (`authorize=admin(sys="sys/webhooks")`: or a policy granting the call on `sys/webhooks`).
"""
from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..services.secret_policies import TenantScope
from ..events.outbox import EVENT_TYPES
from ..services.webhooks import MAX_SECRET, MIN_SECRET, WebhookService
from .auditing import entry_for_request
from .authorization import admin
from .http import runtime
from .params import Duration, Name, PatchBody, WebhookUrl
from .pipeline import endpoint

bp = Blueprint("webhooks", __name__)


EventPattern = Literal.__getitem__(tuple(["*", *EVENT_TYPES, *sorted(
    {t[:i + 1] + "*" for t in EVENT_TYPES for i, c in enumerate(t) if c == "."})]))
Events = Annotated[list[EventPattern], Field(min_length=1, max_length=50, description="event types, `prefix.*` or `*`")]
SigningSecret = Annotated[str, Field(min_length=MIN_SECRET, max_length=MAX_SECRET,
                                     description="signing secret, write-only; 32+ characters recommended")]


class WebhookFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path_prefix: str | None = Field(default=None, max_length=512)
    secret_type: str | None = Field(default=None, max_length=512)
    tags: list[str] | None = Field(default=None, max_length=50)


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    url: WebhookUrl
    secret: SigningSecret
    events: Events
    filters: WebhookFilters | None = Field(default=None, description="path_prefix, secret_type, tags (any of)")
    enabled: bool = Field(default=None, description="default true")                        # type: ignore[assignment]


class WebhookPatch(PatchBody):
    """Omitted members stay as they are; none may be null (`filters: null` clears the filters)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1,
                                                                 "dependentRequired": {"previous_secret_ttl": ["secret"]}})

    @model_validator(mode="after")
    def _ttl_with_secret(self) -> "WebhookPatch":
        if "previous_secret_ttl" in self.model_fields_set and "secret" not in self.model_fields_set:
            raise ValueError("previous_secret_ttl only with a new secret")
        return self
    name: Name = None                                                                         # type: ignore[assignment]
    url: WebhookUrl = None                                                                           # type: ignore[assignment]
    secret: SigningSecret = Field(default=None, description="a new signing secret; the old one is kept as "
                                                            "previous_secret")                # type: ignore[assignment]
    previous_secret_ttl: Duration = Field(default=None, description="how long the previous secret is kept (default "
                                                                    "24h; only with a new secret)")  # type: ignore[assignment]
    events: Events = None                                                                     # type: ignore[assignment]
    filters: WebhookFilters | None = None
    enabled: bool = None                                                                      # type: ignore[assignment]


def _service() -> WebhookService:
    rt = runtime()
    return WebhookService(rt.db, rt.keyring, rt.settings)


def _scope() -> TenantScope:
    return TenantScope(g.tenant.tenant_id, g.tenant.partner_id)


@bp.get("/v1/webhooks")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"),
          summary="List webhooks", query={"limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"})
def list_webhooks():
    return jsonify(_service().list(_scope(), request.args.get("limit"), request.args.get("cursor")))


@bp.post("/v1/webhooks")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"), body=WebhookBody, summary="Create a webhook", status=201)
def create_webhook():
    body = g.body.model_dump(exclude_unset=True)
    return jsonify(_service().create(_scope(), body, g.identity.identity_id, entry_for_request)), 201


@bp.get("/v1/webhooks/<webhook_id>")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"), summary="Get a webhook with statistics and its last delivery")
def get_webhook(webhook_id: str):
    return jsonify(_service().get(_scope(), webhook_id))


@bp.patch("/v1/webhooks/<webhook_id>")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"),
          body=WebhookPatch, summary="Update a webhook; rotate its signing secret")
def patch_webhook(webhook_id: str):
    return jsonify(_service().update(_scope(), webhook_id, g.body.model_dump(exclude_unset=True), entry_for_request))


@bp.delete("/v1/webhooks/<webhook_id>")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"), summary="Delete a webhook", status=204)
def delete_webhook(webhook_id: str):
    _service().delete(_scope(), webhook_id, entry_for_request)
    return "", 204


@bp.post("/v1/webhooks/<webhook_id>/test")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"), summary="Send a signed webhook.test event now")
def test_webhook(webhook_id: str):
    return jsonify(_service().test(_scope(), webhook_id, g.identity.identity_id, g.get("request_id"), entry_for_request))


@bp.get("/v1/webhooks/<webhook_id>/deliveries")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"), summary="The delivery log, newest first",
          query={"status": ("success, failed, pending or skipped", {"type": "string", "enum": ["success", "failed", "pending", "skipped"]}), "limit": "page size, 1..1000 (default 100)", "cursor": "from the previous page"})
def list_deliveries(webhook_id: str):
    args = request.args
    return jsonify(_service().deliveries(_scope(), webhook_id, args.get("status"), args.get("limit"), args.get("cursor")))


@bp.post("/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
@endpoint("webhooks", scope="admin", authorize=admin(sys="sys/webhooks"),
          summary="Queue the delivery's event again (a new delivery, same event_id)",
          status=202)
def redeliver(webhook_id: str, delivery_id: str):
    return jsonify(_service().redeliver(_scope(), webhook_id, delivery_id, entry_for_request)), 202
