"""/v1/subscriptions: identity-owned event subscriptions, pushed or long-polled (spec/30 section 6).

A subscription belongs to the identity that created it: only it polls and acks (403
otherwise); the owner or a tenant admin may read, change or delete it (`_owned`, the one
guard of this module). Events are handed out only for paths the owner may read right then.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ScaiVaultError
from ..policy.access import request_context
from ..services.secret_policies import TenantScope
from ..services.subscriptions import (DEFAULT_MAX_EVENTS, DEFAULT_TIMEOUT, MAX_EVENTS, MAX_TIMEOUT,
                                      SubscriptionService)
from .auditing import entry_for_request
from .authorization import admin_allows, identity_only
from .http import runtime
from .pipeline import endpoint

bp = Blueprint("subscriptions", __name__)


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    paths: list[str] = Field(description="path globs in the access-policy dialect")
    events: list[str]
    delivery: dict[str, Any] = Field(description="{type: webhook, url, secret} or {type: polling, buffer_size}")
    filters: dict[str, Any] | None = None


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    paths: list[str] | None = None
    events: list[str] | None = None
    delivery: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_ids: list[str] = Field(min_length=1, max_length=MAX_EVENTS)


def _service() -> SubscriptionService:
    from ..events.pump import listener_for

    rt = runtime()
    return SubscriptionService(rt.db, rt.keyring, rt.settings, listener_factory=lambda: listener_for(rt))


def _scope() -> TenantScope:
    return TenantScope(g.tenant.tenant_id, g.tenant.partner_id)


def _is_admin() -> bool:
    return admin_allows("tenant")


def _owned(sub_id: str, *, owner_only: bool = False) -> dict:
    """The one guard: the subscription, if the caller owns it (or manages the tenant, unless owner_only)."""
    return _service().get_owned(_scope(), sub_id, g.identity, admin=not owner_only and _is_admin())


def _int_arg(name: str, default: int, maximum: int, minimum: int = 0) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise ScaiVaultError("invalid_request", f"{name} must be an integer between {minimum} and {maximum}")
    return max(minimum, min(int(raw), maximum))


@bp.get("/v1/subscriptions")
@endpoint("subscriptions", authorize=identity_only(), scope="subscriptions:read",
          summary="List the caller's subscriptions (all, for tenant admins)",
          query={"limit": "1..200", "cursor": "from the previous page"})
def list_subscriptions():
    return jsonify(_service().list(_scope(), g.identity, _is_admin(), request.args.get("limit"),
                                   request.args.get("cursor")))


@bp.post("/v1/subscriptions")
@endpoint("subscriptions", authorize=identity_only(), scope="subscriptions:write",
          body=SubscriptionBody, summary="Subscribe to events on paths",
          status=201)
def create_subscription():
    body = g.body.model_dump(exclude_unset=True)
    return jsonify(_service().create(_scope(), g.identity, body, entry_for_request)), 201


@bp.get("/v1/subscriptions/<sub_id>")
@endpoint("subscriptions", authorize=identity_only(), scope="subscriptions:read", summary="Get a subscription")
def get_subscription(sub_id: str):
    from ..services.subscriptions import subscription_view

    return jsonify(subscription_view(_owned(sub_id)))


@bp.patch("/v1/subscriptions/<sub_id>")
@endpoint("subscriptions", authorize=identity_only(), scope="subscriptions:write",
          body=SubscriptionPatch, summary="Update paths, events, delivery")
def patch_subscription(sub_id: str):
    row = _owned(sub_id)
    return jsonify(_service().update(_scope(), row, g.body.model_dump(exclude_unset=True), entry_for_request))


@bp.delete("/v1/subscriptions/<sub_id>")
@endpoint("subscriptions", authorize=identity_only(), scope="subscriptions:write",
          summary="Delete a subscription", status=204)
def delete_subscription(sub_id: str):
    _service().delete(_scope(), _owned(sub_id), entry_for_request)
    return "", 204


@bp.get("/v1/subscriptions/<sub_id>/poll")
@endpoint("subscriptions:poll", authorize=identity_only(), scope="subscriptions:read",
          summary="Long-poll for events (owner only)",
          query={"timeout": "seconds, default 30, at most 60 (larger values are clamped)",
                 "since_event_id": "only events after this one", "max_events": "default 100, at most 1000"})
def poll_subscription(sub_id: str):
    row = _owned(sub_id, owner_only=True)
    rt = runtime()
    ctx = request_context(g.identity, request.remote_addr)
    identity, tenant = g.identity, g.tenant

    def can_read(path: str) -> bool:
        return rt.access.decide(identity, tenant, path, "read", ctx).allowed

    since = request.args.get("since_event_id") or None
    if since is not None and len(since) > 64:
        raise ScaiVaultError("invalid_request", "since_event_id is malformed")
    return jsonify(_service().poll(_scope(), row, timeout=_int_arg("timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT),
                                   since_event_id=since,
                                   max_events=_int_arg("max_events", DEFAULT_MAX_EVENTS, MAX_EVENTS, 1),
                                   can_read=can_read, audit=entry_for_request))


@bp.post("/v1/subscriptions/<sub_id>/ack")
@endpoint("subscriptions:poll", authorize=identity_only(), scope="subscriptions:read",
          body=AckBody, summary="Acknowledge polled events (owner only)")
def ack_subscription(sub_id: str):
    row = _owned(sub_id, owner_only=True)
    return jsonify(_service().ack(row, g.body.event_ids))
