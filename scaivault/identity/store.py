"""The identity cache tables (partners, tenants, users, groups, memberships, applications).

Plain SQL over a `Session`; callers choose the transaction. Rows are soft-deleted
(`deleted_at`) so that history and audit references keep resolving.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from ..db import Session

ACTIVE = "ACTIVE"
log = logging.getLogger("scaivault.identity")


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _attrs(row: dict, known: set[str]) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in known}, default=str)


# ----------------------------------------------------------------------------- partners
_PARTNER_FIELDS = {"id", "name", "slug", "region", "status"}


def upsert_partner(s: Session, row: dict, *, synced: bool = True) -> None:
    s.execute(
        """INSERT INTO identity_partners (id, name, slug, region, status, attributes, synced, deleted_at, last_synced_at)
           VALUES (:id, :name, :slug, :region, :status, CAST(:attrs AS jsonb), :synced, NULL, now())
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, slug = EXCLUDED.slug,
               region = COALESCE(EXCLUDED.region, identity_partners.region), status = EXCLUDED.status,
               attributes = EXCLUDED.attributes, synced = identity_partners.synced OR EXCLUDED.synced,
               deleted_at = NULL, last_synced_at = now()""",
        id=row["id"], name=_s(row.get("name")), slug=_s(row.get("slug")), region=_s(row.get("region")),
        status=_s(row.get("status")) or ACTIVE, attrs=_attrs(row, _PARTNER_FIELDS), synced=synced)


def partner(s: Session, partner_id: str) -> dict | None:
    return s.one("SELECT * FROM identity_partners WHERE id = :id", id=partner_id)


def list_partners(s: Session, *, status: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
    where = "deleted_at IS NULL" + (" AND status = :status" if status else "")
    params = {"status": status} if status else {}
    total = s.scalar(f"SELECT count(*) FROM identity_partners WHERE {where}", **params)
    rows = s.query(f"SELECT * FROM identity_partners WHERE {where} ORDER BY id LIMIT :l OFFSET :o",
                   l=limit, o=offset, **params)
    return rows, total


# ----------------------------------------------------------------------------- tenants
_TENANT_FIELDS = {"id", "partner_id", "name", "slug", "status"}


def sealing_partner(s: Session, tenant_id: str) -> str | None:
    """The partner a tenant's data is sealed under, once any was (its tenant key exists); None before."""
    return s.scalar("""SELECT t.partner_id FROM identity_tenants t WHERE t.id = :id AND EXISTS (
                           SELECT 1 FROM tenant_keys k WHERE k.tenant_id = t.id AND k.partner_id = t.partner_id)""",
                    id=tenant_id)


def upsert_tenant(s: Session, row: dict, *, synced: bool = True) -> None:
    """Insert or refresh a tenant; its partner is pinned once data is sealed under it (invariant 11).

    A different partner from ScaiKey for a tenant with sealed data is not applied (the values are
    bound to the old partner and would stop opening); it is logged and kept in
    `attributes.scaikey_partner_id` until an operator moves the data with a re-wrap.
    """
    partner_id = _s(row.get("partner_id"))
    attrs = {k: v for k, v in row.items() if k not in _TENANT_FIELDS}
    sealed_under = sealing_partner(s, row["id"])
    if sealed_under is not None and partner_id is not None and partner_id != sealed_under:
        log.warning("tenant partner change refused: data is sealed under the current partner",
                    extra={"tenant_id": row["id"], "sealed_under": sealed_under, "scaikey_partner_id": partner_id})
        attrs["scaikey_partner_id"] = partner_id
        partner_id = sealed_under
    s.execute(
        """INSERT INTO identity_tenants (id, partner_id, name, slug, status, attributes, synced, deleted_at, last_synced_at)
           VALUES (:id, :partner_id, :name, :slug, :status, CAST(:attrs AS jsonb), :synced, NULL, now())
           ON CONFLICT (id) DO UPDATE SET partner_id = COALESCE(EXCLUDED.partner_id, identity_tenants.partner_id),
               name = EXCLUDED.name, slug = EXCLUDED.slug, status = EXCLUDED.status,
               attributes = EXCLUDED.attributes, synced = identity_tenants.synced OR EXCLUDED.synced,
               deleted_at = NULL, last_synced_at = now()""",
        id=row["id"], partner_id=partner_id, name=_s(row.get("name")), slug=_s(row.get("slug")),
        status=_s(row.get("status")) or ACTIVE, attrs=json.dumps(attrs, default=str), synced=synced)


def ensure_tenant_just_in_time(s: Session, tenant_id: str, partner_id: str | None) -> dict:
    """The cached tenant, created unsynced if a valid token names it before any sync did."""
    if partner_id:
        s.execute("""INSERT INTO identity_partners (id, status, synced) VALUES (:id, 'ACTIVE', false)
                     ON CONFLICT (id) DO NOTHING""", id=partner_id)
    s.execute("""INSERT INTO identity_tenants (id, partner_id, status, synced) VALUES (:id, :p, 'ACTIVE', false)
                 ON CONFLICT (id) DO UPDATE SET partner_id = COALESCE(identity_tenants.partner_id, EXCLUDED.partner_id)
                 WHERE identity_tenants.partner_id IS NULL AND EXCLUDED.partner_id IS NOT NULL""",
              id=tenant_id, p=partner_id)
    return tenant(s, tenant_id)  # type: ignore[return-value]


def tenant(s: Session, tenant_id: str) -> dict | None:
    return s.one("SELECT * FROM identity_tenants WHERE id = :id", id=tenant_id)


def list_tenants(s: Session, *, partner_id: str | None, status: str | None, limit: int, offset: int,
                 restrict_partners: list[str] | None = None, restrict_tenant: str | None = None) -> tuple[list[dict], int]:
    clauses, params = ["deleted_at IS NULL"], {}
    for column, value in (("partner_id", partner_id), ("status", status)):
        if value:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    if restrict_partners is not None:
        clauses.append("partner_id = ANY(CAST(:rp AS text[]))")
        params["rp"] = restrict_partners
    if restrict_tenant is not None:
        clauses.append("id = :rt")
        params["rt"] = restrict_tenant
    where = " AND ".join(clauses)
    total = s.scalar(f"SELECT count(*) FROM identity_tenants WHERE {where}", **params)
    rows = s.query(f"SELECT * FROM identity_tenants WHERE {where} ORDER BY id LIMIT :l OFFSET :o",
                   l=limit, o=offset, **params)
    return rows, total


# ----------------------------------------------------------------------------- users
_USER_FIELDS = {"id", "tenant_id", "email", "first_name", "last_name", "display_name", "status", "mfa_enabled"}


def upsert_user(s: Session, row: dict) -> None:
    display = _s(row.get("display_name")) or " ".join(
        p for p in (_s(row.get("first_name")), _s(row.get("last_name"))) if p) or None
    tenant_ref = row.get("tenant") if isinstance(row.get("tenant"), dict) else {}
    s.execute(
        """INSERT INTO identity_users (id, tenant_id, email, first_name, last_name, display_name, status,
                                       mfa_enabled, attributes, deleted_at, last_synced_at)
           VALUES (:id, :tenant_id, :email, :first, :last, :display, :status, :mfa, CAST(:attrs AS jsonb), NULL, now())
           ON CONFLICT (id) DO UPDATE SET tenant_id = COALESCE(EXCLUDED.tenant_id, identity_users.tenant_id),
               email = COALESCE(EXCLUDED.email, identity_users.email), first_name = EXCLUDED.first_name,
               last_name = EXCLUDED.last_name, display_name = EXCLUDED.display_name, status = EXCLUDED.status,
               mfa_enabled = CASE WHEN :mfa_given THEN EXCLUDED.mfa_enabled ELSE identity_users.mfa_enabled END,
               attributes = EXCLUDED.attributes, deleted_at = NULL, last_synced_at = now()""",
        id=row["id"], tenant_id=_s(row.get("tenant_id")) or _s(tenant_ref.get("id")), email=_s(row.get("email")),
        first=_s(row.get("first_name")), last=_s(row.get("last_name")), display=display,
        status=_s(row.get("status")) or ACTIVE, mfa=bool(row.get("mfa_enabled")),
        mfa_given="mfa_enabled" in row, attrs=_attrs(row, _USER_FIELDS | {"tenant", "partner"}))


def user(s: Session, user_id: str) -> dict | None:
    return s.one("SELECT * FROM identity_users WHERE id = :id", id=user_id)


def user_by_email(s: Session, tenant_id: str | None, email: str) -> dict | None:
    """The cached user of ONE tenant with this email: an email names a user only within its tenant."""
    if not tenant_id:
        return None
    return s.one("""SELECT * FROM identity_users WHERE tenant_id = :t AND lower(email) = lower(:e) AND deleted_at IS NULL
                    ORDER BY last_synced_at DESC NULLS LAST LIMIT 1""", t=tenant_id, e=email)


def list_users(s: Session, tenant_id: str, *, status: str | None, q: str | None, limit: int,
               offset: int) -> tuple[list[dict], int]:
    clauses, params = ["tenant_id = :t", "deleted_at IS NULL"], {"t": tenant_id}
    if status:
        clauses.append("status = :status")
        params["status"] = status
    if q:
        clauses.append("(email ILIKE :q OR display_name ILIKE :q OR first_name ILIKE :q OR last_name ILIKE :q)")
        params["q"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    where = " AND ".join(clauses)
    total = s.scalar(f"SELECT count(*) FROM identity_users WHERE {where}", **params)
    rows = s.query(f"SELECT * FROM identity_users WHERE {where} ORDER BY email, id LIMIT :l OFFSET :o",
                   l=limit, o=offset, **params)
    return rows, total


def set_user_fields(s: Session, user_id: str, **fields: Any) -> int:
    sets = ", ".join(f"{k} = :{k}" for k in fields)
    return s.execute(f"UPDATE identity_users SET {sets}, last_synced_at = now() WHERE id = :id", id=user_id, **fields)


# ----------------------------------------------------------------------------- groups
def upsert_group(s: Session, row: dict) -> None:
    s.execute(
        """INSERT INTO identity_groups (id, tenant_id, name, description, group_type, deleted_at, last_synced_at)
           VALUES (:id, :tenant_id, :name, :description, :group_type, NULL, now())
           ON CONFLICT (id) DO UPDATE SET tenant_id = COALESCE(EXCLUDED.tenant_id, identity_groups.tenant_id),
               name = EXCLUDED.name, description = EXCLUDED.description, group_type = EXCLUDED.group_type,
               deleted_at = NULL, last_synced_at = now()""",
        id=row["id"], tenant_id=_s(row.get("tenant_id")), name=_s(row.get("name")) or row["id"],
        description=_s(row.get("description")), group_type=_s(row.get("group_type")))


def delete_group(s: Session, group_id: str) -> None:
    s.execute("UPDATE identity_groups SET deleted_at = now() WHERE id = :id AND deleted_at IS NULL", id=group_id)
    s.execute("DELETE FROM identity_group_members WHERE group_id = :id OR (member_type = 'group' AND member_id = :id)",
              id=group_id)


def add_member(s: Session, group_id: str, member_type: str, member_id: str, membership_type: str = "DIRECT") -> None:
    s.execute("""INSERT INTO identity_group_members (group_id, member_type, member_id, membership_type)
                 VALUES (:g, :t, :m, :mt) ON CONFLICT DO NOTHING""",
              g=group_id, t=member_type, m=member_id, mt=membership_type)


def remove_member(s: Session, group_id: str, member_type: str, member_id: str) -> None:
    s.execute("DELETE FROM identity_group_members WHERE group_id = :g AND member_type = :t AND member_id = :m",
              g=group_id, t=member_type, m=member_id)


def group(s: Session, group_id: str) -> dict | None:
    return s.one("SELECT * FROM identity_groups WHERE id = :id", id=group_id)


def group_by_name(s: Session, tenant_id: str | None, name: str) -> dict | None:
    return s.one("""SELECT * FROM identity_groups WHERE name = :n AND deleted_at IS NULL
                    AND (tenant_id = :t OR :t IS NULL) ORDER BY id LIMIT 1""", n=name, t=tenant_id)


def list_groups(s: Session, tenant_id: str, *, limit: int, offset: int) -> tuple[list[dict], int]:
    total = s.scalar("SELECT count(*) FROM identity_groups WHERE tenant_id = :t AND deleted_at IS NULL", t=tenant_id)
    rows = s.query("""SELECT g.*, (SELECT count(*) FROM identity_group_members m WHERE m.group_id = g.id) AS member_count
                      FROM identity_groups g WHERE tenant_id = :t AND deleted_at IS NULL ORDER BY name, id
                      LIMIT :l OFFSET :o""", t=tenant_id, l=limit, o=offset)
    return rows, total


def group_members(s: Session, group_id: str, *, limit: int, offset: int) -> tuple[list[dict], int]:
    total = s.scalar("SELECT count(*) FROM identity_group_members WHERE group_id = :g", g=group_id)
    rows = s.query("""SELECT m.member_type, m.member_id, m.membership_type, m.added_at, u.email, g.name AS group_name
                      FROM identity_group_members m
                      LEFT JOIN identity_users u ON m.member_type = 'user' AND u.id = m.member_id
                      LEFT JOIN identity_groups g ON m.member_type = 'group' AND g.id = m.member_id
                      WHERE m.group_id = :g ORDER BY m.member_type DESC, m.member_id LIMIT :l OFFSET :o""",
                   g=group_id, l=limit, o=offset)
    return rows, total


# Groups containing the user directly or through nested groups (cycle-safe: UNION dedups).
_USER_GROUPS_SQL = """
WITH RECURSIVE memberships(group_id) AS (
    SELECT group_id FROM identity_group_members WHERE member_type = 'user' AND member_id = :u
    UNION
    SELECT m.group_id FROM identity_group_members m JOIN memberships ms
        ON m.member_type = 'group' AND m.member_id = ms.group_id
)
SELECT g.id, g.name FROM identity_groups g JOIN memberships ms ON g.id = ms.group_id
WHERE g.deleted_at IS NULL ORDER BY g.name
"""


def groups_of_user(s: Session, user_id: str) -> list[dict]:
    return s.query(_USER_GROUPS_SQL, u=user_id)


# ----------------------------------------------------------------------------- applications
_APP_FIELDS = {"id", "client_id", "name", "slug", "scope", "application_type", "tenant_id", "partner_id"}


def upsert_application(s: Session, row: dict) -> None:
    s.execute(
        """INSERT INTO identity_applications (id, client_id, name, slug, scope, application_type, tenant_id,
                                              partner_id, attributes, deleted_at, last_synced_at)
           VALUES (:id, :client_id, :name, :slug, :scope, :type, :tenant_id, :partner_id, CAST(:attrs AS jsonb), NULL, now())
           ON CONFLICT (id) DO UPDATE SET client_id = EXCLUDED.client_id, name = EXCLUDED.name, slug = EXCLUDED.slug,
               scope = EXCLUDED.scope, application_type = EXCLUDED.application_type, tenant_id = EXCLUDED.tenant_id,
               partner_id = EXCLUDED.partner_id, attributes = EXCLUDED.attributes, deleted_at = NULL,
               last_synced_at = now()""",
        id=row["id"], client_id=_s(row.get("client_id")), name=_s(row.get("name")), slug=_s(row.get("slug")),
        scope=_s(row.get("scope")), type=_s(row.get("application_type")), tenant_id=_s(row.get("tenant_id")),
        partner_id=_s(row.get("partner_id")), attrs=_attrs(row, _APP_FIELDS | {"client_secret"}))


def application_by_client_id(s: Session, client_id: str) -> dict | None:
    return s.one("""SELECT * FROM identity_applications WHERE client_id = :c AND deleted_at IS NULL
                    ORDER BY last_synced_at DESC NULLS LAST LIMIT 1""", c=client_id)


def application_by_name(s: Session, tenant_id: str | None, partner_id: str | None, name: str) -> dict | None:
    """The cached application named so within the tenant (or its partner, or GLOBAL): names are not unique."""
    return s.one("""SELECT * FROM identity_applications WHERE (slug = :n OR name = :n) AND deleted_at IS NULL
                    AND (tenant_id = :t OR (tenant_id IS NULL AND (partner_id = :p OR partner_id IS NULL)))
                    ORDER BY (tenant_id IS NULL), (partner_id IS NULL), last_synced_at DESC NULLS LAST LIMIT 1""",
                 n=name, t=tenant_id or "", p=partner_id or "")


# ----------------------------------------------------------------------------- soft delete
_TABLES = {"partner": "identity_partners", "tenant": "identity_tenants", "user": "identity_users",
           "application": "identity_applications"}


def soft_delete(s: Session, kind: str, object_id: str) -> int:
    if kind == "group":
        delete_group(s, object_id)
        return 1
    n = s.execute(f"UPDATE {_TABLES[kind]} SET deleted_at = now() WHERE id = :id AND deleted_at IS NULL", id=object_id)
    if kind == "user":
        s.execute("DELETE FROM identity_group_members WHERE member_type = 'user' AND member_id = :id", id=object_id)
    return n


def group_identities_of(s: Session, tenant_id: str | None, identity_id: str) -> tuple[str, ...]:
    """`group:<name>` of every cached group (nested included) an identity id such as
    `user:alice@acme.example` of `tenant_id` belongs to; () for service accounts and unknown users."""
    if not identity_id.startswith("user:"):
        return ()
    row = user_by_email(s, tenant_id, identity_id[5:])
    if row is None:
        return ()
    return tuple(dict.fromkeys("group:" + g["name"] for g in groups_of_user(s, row["id"])))
