"""Full (or partner/tenant-limited) identity sync from ScaiKey's admin API (spec/15 section 5.4).

One runner at a time across every instance and worker: the run holds a PostgreSQL advisory
lock. Everything is fetched first and applied in one transaction, so a crash or a ScaiKey
error mid-sync leaves the previous cache exactly as it was.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..auth.identity import principal_key, user_identity_id
from ..errors import ScaiVaultError
from . import store
from .scaikey_admin import ScaiKeyAdminClient

log = logging.getLogger("scaivault.identity.sync")

SYNC_LOCK_KEY = 0x5CA1_1D20   # advisory lock id shared by every instance


@dataclass
class Snapshot:
    """What ScaiKey listed, before anything is applied."""

    partners: list[dict] = field(default_factory=list)
    tenants: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    members: dict[str, list[dict]] = field(default_factory=dict)
    applications: list[dict] = field(default_factory=list)
    admin_roles: list[dict] | None = None

    def counts(self) -> dict[str, int]:
        return {"partners": len(self.partners), "tenants": len(self.tenants), "users": len(self.users),
                "groups": len(self.groups), "memberships": sum(len(m) for m in self.members.values()),
                "applications": len(self.applications)}


def new_run(runtime, *, trigger: str, partner_id: str | None = None, tenant_id: str | None = None,
            requested_by: str | None = None) -> dict:
    kind = "tenant" if tenant_id else "partner" if partner_id else "full"
    return runtime.db.one(
        """INSERT INTO identity_sync_runs (id, kind, partner_id, tenant_id, trigger, status, requested_by)
           VALUES (:id, :k, :p, :t, :tr, 'queued', :by) RETURNING *""",
        id="sync_" + secrets.token_hex(10), k=kind, p=partner_id, t=tenant_id, tr=trigger, by=requested_by)


def _finish(runtime, run_id: str, status: str, counts: dict | None = None, error: str | None = None) -> None:
    runtime.db.execute("""UPDATE identity_sync_runs SET status = :s, finished_at = now(),
                          counts = CAST(:c AS jsonb), error = :e WHERE id = :id""",
                       s=status, c=json.dumps(counts or {}), e=error, id=run_id)


def fetch(client: ScaiKeyAdminClient, partner_id: str | None, tenant_id: str | None) -> Snapshot:
    snap = Snapshot()
    if tenant_id is None:
        snap.partners = [p for p in client.partners() if partner_id in (None, p["id"])]
    tenants = list(client.tenants(partner_id))
    snap.tenants = [t for t in tenants if tenant_id in (None, t["id"])]
    for tenant in snap.tenants:
        snap.users += [{**u, "tenant_id": u.get("tenant_id") or tenant["id"]} for u in client.users(tenant["id"])]
        for group in client.groups(tenant["id"]):
            group = {**group, "tenant_id": group.get("tenant_id") or tenant["id"]}
            snap.groups.append(group)
            snap.members[group["id"]] = list(client.group_members(group["id"]))
    if partner_id is None and tenant_id is None:
        snap.applications = list(client.applications())
        try:
            # MCP agents authenticate with client credentials too: they become sa:<agent name>
            snap.applications += [{**a, "application_type": a.get("agent_type") or "MCP_AGENT"}
                                  for a in client.agents() if isinstance(a.get("client_id"), str)]
        except ScaiVaultError:
            log.info("ScaiKey agents not listable; skipped")
        try:
            snap.admin_roles = list(client.admin_roles())
        except ScaiVaultError:
            snap.admin_roles = None   # only a super-admin token may list them; keep the stored ones
    return snap


def _mark_missing(s, table: str, seen: list[str], scope_sql: str = "", **params) -> int:
    """Soft-delete synced rows (in scope) that ScaiKey no longer lists; just-in-time rows stay."""
    synced_clause = " AND synced" if table in ("identity_partners", "identity_tenants") else ""
    return s.execute(
        f"""UPDATE {table} SET deleted_at = now() WHERE deleted_at IS NULL{synced_clause}
            AND NOT (id = ANY(CAST(:seen AS text[]))){scope_sql}""", seen=seen, **params)


def apply(s, snap: Snapshot, partner_id: str | None, tenant_id: str | None) -> dict[str, int]:
    """Upsert the snapshot and retire what it no longer contains, within the sync's scope."""
    if partner_id is None and tenant_id is None and not snap.tenants:
        known = s.scalar("SELECT count(*) FROM identity_tenants WHERE synced AND deleted_at IS NULL")
        if known:
            # an empty directory is far likelier a misconfigured or broken admin API than a
            # platform without tenants: retiring the whole cache would lock everyone out
            raise ScaiVaultError("service_unavailable", f"ScaiKey listed no tenants while {known} are cached; "
                                 "refusing to retire them all (delete tenants in ScaiKey one by one, "
                                 "or through tenant.deleted events)")
    for p in snap.partners:
        store.upsert_partner(s, p)
    for t in snap.tenants:
        store.upsert_tenant(s, t)
    for u in snap.users:
        store.upsert_user(s, u)
    for g in snap.groups:
        store.upsert_group(s, g)
    for a in snap.applications:
        store.upsert_application(s, a)
    tenant_ids = [t["id"] for t in snap.tenants]
    removed = {}
    if tenant_id is None and partner_id is None:
        removed["partners"] = _mark_missing(s, "identity_partners", [p["id"] for p in snap.partners])
        removed["tenants"] = _mark_missing(s, "identity_tenants", tenant_ids)
        removed["applications"] = _mark_missing(s, "identity_applications", [a["id"] for a in snap.applications])
    elif tenant_id is None:
        removed["tenants"] = _mark_missing(s, "identity_tenants", tenant_ids, " AND partner_id = :p", p=partner_id)
    # users and groups of every synced tenant: the tenant's list is authoritative
    in_tenants = " AND tenant_id = ANY(CAST(:tenants AS text[]))"
    removed["users"] = _mark_missing(s, "identity_users", [u["id"] for u in snap.users], in_tenants, tenants=tenant_ids)
    removed["groups"] = _mark_missing(s, "identity_groups", [g["id"] for g in snap.groups], in_tenants,
                                      tenants=tenant_ids)
    s.execute("""DELETE FROM identity_group_members WHERE group_id IN (
                     SELECT id FROM identity_groups WHERE tenant_id = ANY(CAST(:tenants AS text[])))
                 OR (member_type = 'user' AND member_id IN (SELECT id FROM identity_users WHERE deleted_at IS NOT NULL))""",
              tenants=tenant_ids)
    for group_id, members in snap.members.items():
        for m in members:
            member_type = m.get("type") or m.get("member_type") or ("group" if str(m.get("id", "")).startswith("grp_")
                                                                    else "user")
            member_id = m.get("id") or m.get("user_id") or m.get("member_id")
            if member_type in ("user", "group") and isinstance(member_id, str):
                store.add_member(s, group_id, member_type, member_id, m.get("membership_type") or "DIRECT")
    if snap.admin_roles is not None:
        _apply_admin_roles(s, snap)
    return {f"removed_{k}": v for k, v in removed.items()}


def _apply_admin_roles(s, snap: Snapshot) -> None:
    """ScaiKey's admin-role assignments, stored with source 'scaikey' (ScaiVault's own rows untouched)."""
    users = {u["id"]: u for u in snap.users}
    s.execute("DELETE FROM identity_role_assignments WHERE source = 'scaikey'")
    for r in snap.admin_roles or []:
        role = str(r.get("role", "")).lower()
        user = users.get(r.get("user_id"))
        if role not in ("super_admin", "partner_admin", "tenant_admin") or not user or r.get("is_active") is False:
            continue
        user_tenant = user.get("tenant_id") or (user.get("tenant") or {}).get("id")
        email = user.get("email")
        s.execute("""INSERT INTO identity_role_assignments (principal, identity_id, role, partner_id, tenant_id, source,
                                                            granted_by, expires_at)
                     VALUES (:pr, :i, :r, :p, :t, 'scaikey', 'scaikey', CAST(:e AS timestamptz))
                     ON CONFLICT (principal, role) DO NOTHING""",
                  pr=principal_key(user["id"], user_tenant), i=user_identity_id(email) if email else "user:" + user["id"],
                  r=role, p=r.get("partner_id"), t=r.get("tenant_id"), e=r.get("expires_at"))


def run_sync(runtime, run: dict) -> dict:
    """Run one recorded sync under the cluster-wide lock; returns the final run row.

    Another runner holding the lock makes this run `skipped` (exactly one runs at a time).
    """
    with runtime.db.session() as lock_session:
        got = lock_session.scalar("SELECT pg_try_advisory_lock(:k)", k=SYNC_LOCK_KEY)
        if not got:
            _finish(runtime, run["id"], "skipped", error="another identity sync is running")
            return runtime.db.one("SELECT * FROM identity_sync_runs WHERE id = :id", id=run["id"])
        try:
            # we hold the lock, so any other 'running' row is a run that died mid-way (and a
            # long-'queued' one lost its process before it started)
            runtime.db.execute("""UPDATE identity_sync_runs SET status = 'failed', finished_at = now(),
                                  error = 'interrupted' WHERE id <> :id AND (status = 'running'
                                  OR (status = 'queued' AND started_at < now() - interval '10 minutes'))""",
                               id=run["id"])
            runtime.db.execute("UPDATE identity_sync_runs SET status = 'running', started_at = now() WHERE id = :id",
                               id=run["id"])
            try:
                client = ScaiKeyAdminClient(runtime.settings, runtime.authenticator.jwks.discovery().token_endpoint
                                            if runtime.settings.scaikey_url else None)
                snap = fetch(client, run["partner_id"], run["tenant_id"])
                with runtime.db.transaction() as s:
                    removed = apply(s, snap, run["partner_id"], run["tenant_id"])
                runtime.authenticator.invalidate()
                _finish(runtime, run["id"], "succeeded", {**snap.counts(), **removed})
            except Exception as exc:
                message = exc.message if isinstance(exc, ScaiVaultError) else type(exc).__name__
                log.warning("identity sync failed", extra={"sync_id": run["id"], "error": message})
                _finish(runtime, run["id"], "failed", error=message)
        finally:
            lock_session.scalar("SELECT pg_advisory_unlock(:k)", k=SYNC_LOCK_KEY)
    return runtime.db.one("SELECT * FROM identity_sync_runs WHERE id = :id", id=run["id"])


def start_in_background(runtime, run: dict) -> threading.Thread:
    """Run the sync on a daemon thread (a greenlet under gevent's monkey patching)."""
    thread = threading.Thread(target=run_sync, args=(runtime, run), name=f"identity-sync-{run['id']}", daemon=True)
    thread.start()
    return thread


def last_success(runtime) -> datetime | None:
    return runtime.db.scalar("""SELECT max(finished_at) FROM identity_sync_runs WHERE status = 'succeeded'
                                AND kind = 'full'""")


def history(runtime, *, limit: int, offset: int, tenant_id: str | None = None,
            partner_ids: list[str] | None = None) -> tuple[list[dict], int]:
    """Runs newest first; with tenant_id/partner_ids, only full runs and runs within that reach."""
    where, params = "", {}
    if partner_ids is not None:
        where = "WHERE kind = 'full' OR tenant_id = :t OR partner_id = ANY(CAST(:ps AS text[]))"
        params = {"t": tenant_id, "ps": partner_ids}
    total = runtime.db.scalar(f"SELECT count(*) FROM identity_sync_runs {where}", **params)
    rows = runtime.db.query(f"SELECT * FROM identity_sync_runs {where} ORDER BY started_at DESC, id LIMIT :l OFFSET :o",
                            l=limit, o=offset, **params)
    return rows, total


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
