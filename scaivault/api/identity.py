"""/v1/identity: the identity cache, sync trigger and history, roles, and ScaiKey's webhook receiver."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, Field

from .. import audit, inputs
from ..auth import roles as role_store
from ..auth import tenancy
from ..auth.identity import ADMIN_ROLES, Identity, principal_key, user_identity_id
from ..errors import ScaiVaultError
from ..identity import store, sync, webhooks
from .auditing import entry_for_request, record_read
from .http import runtime
from .authorization import identity_only, reach, require_reach, role
from .pipeline import endpoint

bp = Blueprint("identity", __name__)
log = logging.getLogger("scaivault.identity.webhooks")

MAX_PAGE_SIZE = 500
PAGING = {"page": "page number, from 1", "page_size": f"1-{MAX_PAGE_SIZE}, default 50"}
IDENTITY_TYPES = ("user", "group", "service_account")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return value


def _paging() -> tuple[int, int, int]:
    """(page, page_size, offset) from the query, or validation_error."""
    fields = {}
    values = {}
    for name, default, high in (("page", 1, 1_000_000), ("page_size", 50, MAX_PAGE_SIZE)):
        try:
            values[name] = inputs.parse_int(request.args.get(name, str(default)), name, low=1, high=high)
        except ScaiVaultError:
            fields[name] = f"must be an integer between 1 and {high}"
    if fields:
        raise ScaiVaultError("validation_error", "bad pagination parameters", details={"fields": fields})
    return values["page"], values["page_size"], (values["page"] - 1) * values["page_size"]


def _text_arg(name: str, limit: int = 128) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise ScaiVaultError("validation_error", f"{name} is too long", details={"fields": {name: "too long"}})
    return value


def _platform(identity: Identity) -> bool:
    return tenancy.platform_reach(identity)


def _audit_read(endpoint_name: str, tenant_row: dict | None = None, **extra: Any) -> None:
    """The identity cache is who-is-who of a tenant: reading it is audited (`identity_read`) before answering."""
    record_read(runtime(), "identity_read", tenant_id=tenant_row["id"] if tenant_row else None,
                partner_id=tenant_row["partner_id"] if tenant_row else None,
                extra={"endpoint": endpoint_name, **{k: v for k, v in extra.items() if v is not None}})


def _reachable_or_missing(tenant_id: str, what: str) -> dict:
    """An object of a tenant outside the caller's reach answers exactly like one that does not exist (F6)."""
    try:
        return require_reach(tenant_id)
    except ScaiVaultError as exc:
        if exc.code == "tenant_not_found":
            raise ScaiVaultError("identity_not_found", f"no such {what} in the identity cache") from None
        raise


def _partner_view(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "slug": row["slug"], "region": row["region"],
            "status": row["status"], "synced": row["synced"], "last_synced_at": _iso(row["last_synced_at"])}


def _tenant_view(row: dict) -> dict:
    return {"id": row["id"], "partner_id": row["partner_id"], "name": row["name"], "slug": row["slug"],
            "status": row["status"], "synced": row["synced"], "last_synced_at": _iso(row["last_synced_at"])}


def _user_views(s, rows: list[dict]) -> list[dict]:
    ids = [r["id"] for r in rows]
    groups = {r["member_id"]: r["groups"] for r in s.query(
        """SELECT member_id, array_agg(group_id ORDER BY group_id) AS groups FROM identity_group_members
           WHERE member_type = 'user' AND member_id = ANY(CAST(:ids AS text[])) GROUP BY member_id""", ids=ids)}
    principals = [principal_key(r["id"], r["tenant_id"]) for r in rows]
    roles: dict[str, list[str]] = {}
    for r in s.query("""SELECT principal, role FROM identity_role_assignments
                        WHERE principal = ANY(CAST(:ps AS text[])) ORDER BY role""", ps=principals):
        roles.setdefault(r["principal"], []).append(r["role"])
    return [{"id": r["id"], "tenant_id": r["tenant_id"], "email": r["email"], "display_name": r["display_name"],
             "status": r["status"], "mfa_enabled": r["mfa_enabled"], "groups": list(groups.get(r["id"], [])),
             "roles": roles.get(principal_key(r["id"], r["tenant_id"]), []), "last_synced_at": _iso(r["last_synced_at"])}
            for r in rows]


def _name_tenant() -> str | None:
    """The tenant a name (`user:<email>`, `group:<name>`) is resolved in: the one the request names, else home."""
    named, _ = tenancy.requested_tenant(request.environ.get("scaivault.path_tenant"), request.headers.get("X-Tenant-ID"))
    return named or g.identity.tenant_id


# ----------------------------------------------------------------------------- cache listings
@bp.get("/v1/identity/partners")
@endpoint("identity:read", scope="identity:read", tenant=False, query={**PAGING, "status": "e.g. ACTIVE"},
          authorize=identity_only())
def list_partners():
    """Cached partners: all for platform admins, otherwise the caller's own partner."""
    page, size, offset = _paging()
    status = _text_arg("status")
    with runtime().db.session() as s:
        if _platform(g.identity):
            rows, total = store.list_partners(s, status=status, limit=size, offset=offset)
        else:
            row = store.partner(s, g.identity.partner_id) if g.identity.partner_id else None
            rows = [row] if row and row["deleted_at"] is None and status in (None, row["status"]) else []
            total = len(rows)
            rows = rows[offset:offset + size]
    _audit_read("partners", count=len(rows))
    return jsonify({"partners": [_partner_view(r) for r in rows], "total": total, "page": page, "page_size": size})


@bp.get("/v1/identity/tenants")
@endpoint("identity:read", scope="identity:read", tenant=False,
          query={**PAGING, "partner_id": "only this partner", "status": "e.g. ACTIVE"}, authorize=identity_only())
def list_tenants():
    """Cached tenants within the caller's reach (platform, partner, or its own tenant)."""
    page, size, offset = _paging()
    identity: Identity = g.identity
    restrict_partners = restrict_tenant = None
    if not _platform(identity):
        restrict_partners = sorted(tenancy.partner_reach(identity))
        if not restrict_partners:
            restrict_partners = None
            restrict_tenant = identity.tenant_id or ""
    with runtime().db.session() as s:
        rows, total = store.list_tenants(s, partner_id=_text_arg("partner_id"), status=_text_arg("status"),
                                         limit=size, offset=offset, restrict_partners=restrict_partners,
                                         restrict_tenant=restrict_tenant)
    _audit_read("tenants", count=len(rows))
    return jsonify({"tenants": [_tenant_view(r) for r in rows], "total": total, "page": page, "page_size": size})


@bp.get("/v1/identity/tenants/<tenant_id>/users")
@endpoint("identity:read", scope="identity:read", tenant=False,
          query={**PAGING, "status": "e.g. ACTIVE", "q": "search in email and name"}, authorize=reach("tenant_id"))
def list_users(tenant_id: str):
    """Cached users of one tenant; `q` searches email and name."""
    page, size, offset = _paging()
    with runtime().db.session() as s:
        rows, total = store.list_users(s, tenant_id, status=_text_arg("status"), q=_text_arg("q"),
                                       limit=size, offset=offset)
        views = _user_views(s, rows)
    _audit_read("users", g.reached_tenant, count=len(views), q=_text_arg("q"))
    return jsonify({"users": views, "total": total, "page": page, "page_size": size})


@bp.get("/v1/identity/tenants/<tenant_id>/groups")
@endpoint("identity:read", scope="identity:read", tenant=False, query=PAGING, authorize=reach("tenant_id"))
def list_groups(tenant_id: str):
    """Cached groups of one tenant."""
    page, size, offset = _paging()
    with runtime().db.session() as s:
        rows, total = store.list_groups(s, tenant_id, limit=size, offset=offset)
    groups = [{"id": r["id"], "tenant_id": r["tenant_id"], "name": r["name"], "identity_id": "group:" + r["name"],
               "description": r["description"], "group_type": r["group_type"], "member_count": r["member_count"],
               "last_synced_at": _iso(r["last_synced_at"])} for r in rows]
    _audit_read("groups", g.reached_tenant, count=len(groups))
    return jsonify({"groups": groups, "total": total, "page": page, "page_size": size})


@bp.get("/v1/identity/groups/<group_id>/members")
@endpoint("identity:read", scope="identity:read", tenant=False, query=PAGING, authorize=reach(None))
def group_members(group_id: str):
    """Direct members of a cached group (users and nested groups)."""
    page, size, offset = _paging()
    with runtime().db.session() as s:
        group = store.group(s, group_id[:128])
    if group is None or group["deleted_at"] is not None or not group["tenant_id"]:
        raise ScaiVaultError("identity_not_found", "no such group in the identity cache")
    tenant_row = _reachable_or_missing(group["tenant_id"], "group")
    with runtime().db.session() as s:
        rows, total = store.group_members(s, group_id, limit=size, offset=offset)
    members = []
    for r in rows:
        member = {"membership_type": r["membership_type"], "added_at": _iso(r["added_at"]), "member_type": r["member_type"]}
        if r["member_type"] == "user":
            member.update(user_id=r["member_id"], email=r["email"])
        else:
            member.update(group_id=r["member_id"], name=r["group_name"])
        members.append(member)
    _audit_read("group_members", tenant_row, group_id=group["id"], count=len(members))
    return jsonify({"members": members, "total": total, "page": page, "page_size": size})


@bp.get("/v1/identity/resolve/<identity_type>/<path:identity_id>")
@endpoint("identity:read", scope="identity:read", tenant=False, authorize=reach(None))
def resolve_identity(identity_type: str, identity_id: str):
    """One cached identity with its group memberships: a user (usr_ id or email), group or service account."""
    if identity_type not in IDENTITY_TYPES:
        raise ScaiVaultError("invalid_request", f"identity_type must be one of {', '.join(IDENTITY_TYPES)}")
    key = identity_id[:320]
    for prefix in ("user:", "group:", "sa:"):
        key = key.removeprefix(prefix)
    rt = runtime()
    with rt.db.session() as s:
        if identity_type == "user":
            row = store.user(s, key) or (store.user_by_email(s, _name_tenant(), key) if "@" in key else None)
            if row is None or row["deleted_at"] is not None:
                raise ScaiVaultError("identity_not_found", "no such user in the identity cache")
            body = _user_views(s, [row])[0]
            body.update(type="user", identity_id=user_identity_id(row["email"]) if row["email"] else "user:" + row["id"],
                        group_names=["group:" + gr["name"] for gr in store.groups_of_user(s, row["id"])])
        elif identity_type == "group":
            row = store.group(s, key) or store.group_by_name(s, _name_tenant(), key)
            if row is None or row["deleted_at"] is not None:
                raise ScaiVaultError("identity_not_found", "no such group in the identity cache")
            body = {"id": row["id"], "type": "group", "identity_id": "group:" + row["name"], "tenant_id": row["tenant_id"],
                    "name": row["name"], "description": row["description"], "last_synced_at": _iso(row["last_synced_at"])}
        else:
            row = store.application_by_client_id(s, key) or store.application_by_name(s, _name_tenant(),
                                                                                      g.identity.partner_id, key)
            if row is None:
                raise ScaiVaultError("identity_not_found", "no such service account in the identity cache")
            body = {"id": row["id"], "type": "service_account",
                    "identity_id": "sa:" + (row["slug"] or row["name"] or row["client_id"]),
                    "client_id": row["client_id"], "name": row["name"], "tenant_id": row["tenant_id"],
                    "partner_id": row["partner_id"], "scope": row["scope"], "last_synced_at": _iso(row["last_synced_at"])}
    tenant_row = None
    if body.get("tenant_id"):
        tenant_row = _reachable_or_missing(body["tenant_id"], identity_type.replace("_", " "))
    elif not _platform(g.identity):
        raise ScaiVaultError("identity_not_found", "no such identity in the identity cache")
    _audit_read("resolve", tenant_row, type=identity_type, id=body["id"])
    return jsonify(body)


# ----------------------------------------------------------------------------- sync
def _run_view(row: dict) -> dict:
    return {"sync_id": row["id"], "kind": row["kind"], "partner_id": row["partner_id"], "tenant_id": row["tenant_id"],
            "trigger": row["trigger"], "status": row["status"], "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]), "counts": row["counts"], "error": row["error"]}


@bp.post("/v1/identity/sync")
@endpoint("identity:sync", scope="identity:admin", tenant=False, status=202,
          query={"partner_id": "sync only this partner", "tenant_id": "sync only this tenant"}, authorize=reach(None))
def trigger_sync():
    """Start a full (or partner/tenant-limited) sync from ScaiKey; answers 202 at once."""
    partner_id, tenant_id = _text_arg("partner_id", 64), _text_arg("tenant_id", 64)
    identity: Identity = g.identity
    if tenant_id is not None:
        require_reach(tenant_id)
    elif partner_id is not None:
        if not _platform(identity) and partner_id not in tenancy.partner_reach(identity):
            raise ScaiVaultError("access_denied", "you may not sync this partner",
                                 details={"reason": "cross_tenant"})
    elif not _platform(identity):
        # a full sync is platform-wide; anyone else syncs the tenant they act in
        if identity.tenant_id is None:
            raise ScaiVaultError("access_denied", "a full sync needs super_admin", details={"reason": "cross_tenant"})
        tenant_id = identity.tenant_id
    rt = runtime()
    with rt.db.transaction() as s:
        run = sync.new_run(rt, trigger="api", partner_id=partner_id, tenant_id=tenant_id,
                           requested_by=g.identity.identity_id)
        audit.record(s, entry_for_request("identity_sync", extra={"sync_id": run["id"], "kind": run["kind"]}))
    sync.start_in_background(rt, run)
    return jsonify({"sync_id": run["id"], "status": run["status"], "started_at": _iso(run["started_at"])}), 202


@bp.get("/v1/identity/sync/history")
@endpoint("identity:read", scope="identity:read", tenant=False, query=PAGING, authorize=identity_only())
def sync_history():
    """Past and running sync runs, newest first."""
    page, size, offset = _paging()
    identity: Identity = g.identity
    if _platform(identity):
        rows, total = sync.history(runtime(), limit=size, offset=offset)
        views = [_run_view(r) for r in rows]
    else:
        rows, total = sync.history(runtime(), limit=size, offset=offset, tenant_id=identity.tenant_id,
                                   partner_ids=sorted(tenancy.partner_reach(identity)))
        # platform-wide runs are listed without their platform-wide counts
        views = [{**_run_view(r), "counts": {}} if r["kind"] == "full" else _run_view(r) for r in rows]
    _audit_read("sync_history", count=len(views))
    return jsonify({"syncs": views, "total": total, "page": page, "page_size": size})


# ----------------------------------------------------------------------------- roles
@bp.get("/v1/identity/roles")
@endpoint("identity:read", tenant=False, authorize=identity_only())
def list_roles():
    """The admin roles ScaiVault assigns and their reach."""
    return jsonify({"roles": [{"name": name, "level": level, "description": text}
                              for name, (level, text) in role_store.ROLE_DESCRIPTIONS.items()]})


def _role_target(user_id: str) -> role_store.RoleTarget:
    """user_id is a cached usr_ id, or `user:<email>` of a cached user of the tenant the request names
    (else the caller's own): roles are stored under the user's sub and tenant, so the user must be known."""
    rt = runtime()
    with rt.db.session() as s:
        if user_id.startswith("user:"):
            row = store.user_by_email(s, _name_tenant(), user_id[5:]) if len(user_id) <= 325 else None
        else:
            row = store.user(s, user_id)
        if row is None or row["deleted_at"] is not None:
            raise ScaiVaultError("identity_not_found", "no such user in the identity cache")
        tenant_row = store.tenant(s, row["tenant_id"]) if row["tenant_id"] else None
    return role_store.RoleTarget(identity_id=user_identity_id(row["email"]) if row["email"] else "user:" + row["id"],
                                 subject=row["id"], tenant_id=row["tenant_id"],
                                 partner_id=tenant_row["partner_id"] if tenant_row else None)


def _may_view_roles(target: role_store.RoleTarget) -> bool:
    identity: Identity = g.identity
    return (identity.principal == target.principal or _platform(identity)
            or identity.admin_over(target.tenant_id, target.partner_id)
            or (target.tenant_id is not None and target.tenant_id == identity.tenant_id))


@bp.get("/v1/identity/users/<path:user_id>/roles")
@endpoint("identity:read", scope="identity:read", tenant=False, authorize=identity_only())
def get_user_roles(user_id: str):
    """The stored admin roles of one user (ScaiKey-synced and ScaiVault-assigned)."""
    target = _role_target(user_id[:330])
    if not _may_view_roles(target):
        raise ScaiVaultError("identity_not_found", "no such user in the identity cache")
    with runtime().db.session() as s:
        rows = role_store.stored_assignments(s, target.principal)
    _audit_read("user_roles", None, target=target.identity_id, target_principal=target.principal)
    return jsonify({"identity_id": target.identity_id, "roles": [r["role"] for r in rows],
                    "assignments": [{k: _iso(v) for k, v in r.items()} for r in rows]})


class RolesBody(BaseModel):
    roles: list[str] = Field(max_length=len(ADMIN_ROLES) * 2)


@bp.put("/v1/identity/users/<path:user_id>/roles")
@endpoint("identity:read", scope="identity:admin", tenant=False, body=RolesBody,
          authorize=role("super_admin", "partner_admin"))
def put_user_roles(user_id: str):
    """Replace a user's stored roles (only super/partner admins; only super_admin grants super_admin)."""
    target = _role_target(user_id[:330])
    rt = runtime()
    with rt.db.transaction() as s:
        rows = role_store.replace_roles(s, g.identity, target, g.body.roles)
        audit.record(s, entry_for_request("role_assign", extra={"target": target.identity_id,
                                                                "target_principal": target.principal,
                                                                "roles": [r["role"] for r in rows]}))
    rt.authenticator.invalidate()
    return jsonify({"identity_id": target.identity_id, "roles": [r["role"] for r in rows]})


# ----------------------------------------------------------------------------- webhook receiver
@bp.post("/v1/identity/webhooks/scaikey")
@endpoint("identity:webhook", authenticated=False, tenant=False)
def scaikey_webhook():
    """ScaiKey's signed event delivery: verified on the raw body, applied once per event_id."""
    rt = runtime()
    secret = rt.settings.identity_sync_webhook_secret
    if not secret:
        raise ScaiVaultError("service_unavailable", "the ScaiKey webhook receiver is not configured "
                             "(IDENTITY_SYNC_WEBHOOK_SECRET)")
    raw = request.get_data(cache=True)
    webhooks.verify_signature(secret, request.headers, raw)
    envelope = webhooks.parse_envelope(raw)
    event_id, event_type = envelope["event_id"], envelope["event_type"]
    try:
        with rt.db.transaction() as s:
            if not webhooks.claim_event(s, event_id, event_type):
                return jsonify({"event_id": event_id, "status": "duplicate"})
            outcome = webhooks.apply_event(s, envelope)
            if outcome != "applied":
                webhooks.mark_event(s, event_id, event_type, outcome)
    except ScaiVaultError:
        raise   # e.g. the database is down: 503, ScaiKey retries the delivery
    except Exception as exc:
        # spec/15 4.5: a valid delivery is acknowledged even when applying fails; the next full sync repairs it
        log.warning("webhook event not applied", extra={"event_id": event_id, "event_type": event_type,
                                                        "error": type(exc).__name__})
        with rt.db.session() as s:
            webhooks.mark_event(s, event_id, event_type, "failed")
        return jsonify({"event_id": event_id, "status": "failed"})
    if outcome == "applied":
        rt.authenticator.invalidate()
    return jsonify({"event_id": event_id, "status": outcome})
