"""Access policies and bindings: storage, audited changes, and the loader the policy cache uses.

Tenant-scope policies belong to one tenant; partner-scope policies (tenant_id NULL) apply in
every tenant of their partner and to partner secrets. Every change is audited in its own
transaction and then announced to the policy caches of every instance.
"""
from __future__ import annotations

import json
import secrets as pyrandom
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from .. import inputs, pagination
from ..audit import AuditEntry, record
from ..db import Database, Session
from ..errors import ScaiVaultError
from ..lifecycle.hooks import policy_changed
from ..policy.cache import PolicyCache
from ..policy.rules import parse_rules

AuditFn = Callable[..., AuditEntry]      # audit(action, secret_path=None, extra=None) -> AuditEntry

IDENTITY_PREFIXES = {"user": "user:", "service_account": "sa:", "group": "group:",
                     "dynamic_engine": "dynamic:"}   # dynamic:<engine>, the identity of a dynamic engine
DEFAULT_PAGE = pagination.DEFAULT_LIMIT
MAX_PAGE = pagination.MAX_LIMIT
MAX_NAME = 128
MAX_DESCRIPTION = 2000


@dataclass(frozen=True)
class PolicyOwner:
    """Where a request acts: its tenant and partner."""

    tenant_id: str
    partner_id: str | None


iso = pagination.timestamp     # one timestamp format everywhere (RFC 3339, microseconds, Z)


def _new_id(prefix: str) -> str:
    return prefix + pyrandom.token_hex(8)


def encode_cursor(value: str) -> str:
    """A signed cursor for a string keyset position (scaivault.pagination)."""
    return pagination.encode_cursor(value)


def decode_cursor(cursor: str | None) -> str | None:
    """The string keyset position of a cursor we signed; 400 invalid_cursor otherwise."""
    after = pagination.decode_cursor(cursor)
    if after is not None and (not isinstance(after, str) or len(after) > 1024):
        raise ScaiVaultError("invalid_cursor", "the cursor belongs to another listing; start again without it")
    return after


_encode_cursor = encode_cursor
page_limit = _page_limit = pagination.page_limit


def _parse_time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return inputs.parse_timestamp(value)
    except ValueError:
        raise ScaiVaultError("invalid_policy", f"{field} must be an ISO-8601 timestamp") from None


def _load_bound_sql(owner_sql: str) -> str:
    return f"""SELECT p.id, p.name, p.rules,
                      CASE WHEN bool_or(b.expires_at IS NULL) THEN NULL ELSE max(b.expires_at) END AS lapse
                 FROM policy_bindings b JOIN policies p ON p.id = b.policy_id
                WHERE b.identity_id = ANY(CAST(:ids AS text[])) AND p.is_active
                  AND (b.expires_at IS NULL OR b.expires_at > now()) AND {owner_sql}
                GROUP BY p.id ORDER BY p.id"""


# the policy cache's loader, by whether a tenant is given (False: the partner's own policies only)
LOAD_BOUND_SQL = {
    False: _load_bound_sql("p.tenant_id IS NULL AND p.partner_id = :partner"),
    True: _load_bound_sql("(p.tenant_id = :tenant OR (p.tenant_id IS NULL AND p.partner_id = :partner))"),
}


class PolicyService:
    """CRUD for policies and bindings within one owner's reach; no Flask here."""

    def __init__(self, db: Database, cache: PolicyCache | None = None):
        self.db = db
        self.cache = cache

    # ------------------------------------------------------------------ loader for the cache
    def load_bound(self, tenant_id: str | None, partner_id: str | None, identity_ids: tuple[str, ...]) -> Iterable[tuple]:
        """Active policies bound (unexpired) to any of identity_ids, visible in tenant_id (None: partner only)."""
        with self.db.session() as s:     # prepared: one round trip for a policy-cache miss (a new identity)
            params = {"ids": list(identity_ids), "partner": partner_id or ""}
            if tenant_id is not None:
                params["tenant"] = tenant_id
            rows = s.run_prepared(LOAD_BOUND_SQL[tenant_id is not None], **params)
        return [(r["id"], r["name"], r["rules"], r["lapse"]) for r in rows]

    def _changed(self, row: dict) -> None:
        if self.cache is not None:
            self.cache.invalidate(row["tenant_id"], row["partner_id"])

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _visible_sql() -> str:
        return "(p.tenant_id = :tenant OR (p.tenant_id IS NULL AND p.partner_id = :partner))"

    def _fetch(self, s: Session, owner: PolicyOwner, policy_id: str, *, lock: bool = False) -> dict:
        row = s.one(f"SELECT p.* FROM policies p WHERE p.id = :id AND {self._visible_sql()}"
                    + (" FOR UPDATE" if lock else ""),
                    id=policy_id, tenant=owner.tenant_id, partner=owner.partner_id or "")
        if row is None:
            raise ScaiVaultError("policy_not_found", "no such policy", details={"policy_id": policy_id[:64]})
        return row

    @staticmethod
    def binding_view(row: dict) -> dict:
        return {"id": row["id"], "policy_id": row["policy_id"], "identity_type": row["identity_type"],
                "identity_id": row["identity_id"], "expires_at": iso(row["expires_at"]),
                "created_at": iso(row["created_at"]), "created_by": row["created_by"]}

    @staticmethod
    def policy_view(row: dict, bindings: list[dict] | None = None) -> dict:
        out = {"id": row["id"], "name": row["name"], "description": row["description"], "scope": row["scope"],
               "rules": row["rules"], "is_active": row["is_active"], "tenant_id": row["tenant_id"],
               "partner_id": row["partner_id"], "created_at": iso(row["created_at"]),
               "updated_at": iso(row["updated_at"]), "created_by": row["created_by"],
               "updated_by": row["updated_by"]}
        if bindings is not None:
            out["bindings"] = [PolicyService.binding_view(b) for b in bindings]
        return out

    def get(self, owner: PolicyOwner, policy_id: str) -> dict:
        with self.db.session() as s:
            row = self._fetch(s, owner, policy_id)
            bindings = s.query("SELECT * FROM policy_bindings WHERE policy_id = :id ORDER BY created_at, id", id=policy_id)
        return self.policy_view(row, bindings)

    def list(self, owner: PolicyOwner, *, scope: str | None, include_inactive: bool, limit: Any,
             cursor: str | None) -> dict:
        size = _page_limit(limit)
        after = decode_cursor(cursor)
        if scope not in (None, "", "tenant", "partner"):
            raise ScaiVaultError("invalid_request", "scope must be tenant or partner")
        where = [self._visible_sql()]
        if scope:
            where.append("p.scope = :scope")
        if not include_inactive:
            where.append("p.is_active")
        if after is not None:
            where.append("p.id > :after")
        rows = self.db.query(
            f"""SELECT p.*, (SELECT count(*) FROM policy_bindings b WHERE b.policy_id = p.id) AS binding_count
                  FROM policies p WHERE {' AND '.join(where)} ORDER BY p.id LIMIT :n""",
            tenant=owner.tenant_id, partner=owner.partner_id or "", scope=scope or None, after=after, n=size + 1)
        has_more = len(rows) > size
        rows = rows[:size]
        items = [{"id": r["id"], "name": r["name"], "description": r["description"], "scope": r["scope"],
                  "rule_count": len(r["rules"]), "binding_count": r["binding_count"], "is_active": r["is_active"],
                  "created_at": iso(r["created_at"]), "updated_at": iso(r["updated_at"])} for r in rows]
        return {"policies": items, "cursor": _encode_cursor(rows[-1]["id"]) if has_more else None,
                "has_more": has_more}

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _fields(body: dict, *, partial: bool) -> dict:
        if "\\u0000" in json.dumps(body, default=str):   # PostgreSQL text and jsonb cannot hold NUL
            raise ScaiVaultError("invalid_policy", "the policy must not contain NUL characters")
        out: dict[str, Any] = {}
        if "name" in body or not partial:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
                raise ScaiVaultError("invalid_policy", f"name is required (1..{MAX_NAME} characters)")
            out["name"] = name.strip()
        if "description" in body or not partial:
            desc = body.get("description") or ""
            if not isinstance(desc, str) or len(desc) > MAX_DESCRIPTION:
                raise ScaiVaultError("invalid_policy", f"description must be a string of at most {MAX_DESCRIPTION} characters")
            out["description"] = desc
        if "rules" in body or not partial:
            rules = parse_rules(body.get("rules"))
            out["rules"] = [r.raw for r in rules]
        if "is_active" in body:
            if not isinstance(body["is_active"], bool):
                raise ScaiVaultError("invalid_policy", "is_active must be true or false")
            out["is_active"] = body["is_active"]
        return out

    @staticmethod
    def _unique_violation(exc: Exception) -> bool:
        args = getattr(exc, "args", ())
        return bool(args) and isinstance(args[0], dict) and args[0].get("C") == "23505"

    # ------------------------------------------------------------------ writes
    def create(self, owner: PolicyOwner, body: dict, actor: str, audit: AuditFn) -> dict:
        fields = self._fields(body, partial=False)
        scope = body.get("scope") or "tenant"
        if scope not in ("tenant", "partner"):
            raise ScaiVaultError("invalid_policy", "scope must be tenant or partner")
        if scope == "partner" and not owner.partner_id:
            raise ScaiVaultError("invalid_policy", "this tenant belongs to no partner; use scope tenant")
        policy_id = _new_id("pol_")
        from pg8000.exceptions import DatabaseError

        try:
            with self.db.transaction() as s:
                row = s.one(
                    """INSERT INTO policies (id, partner_id, tenant_id, scope, name, description, rules, is_active,
                                             created_by, updated_by)
                       VALUES (:id, :partner, :tenant, :scope, :name, :description, CAST(:rules AS jsonb),
                               :active, :actor, :actor) RETURNING *""",
                    id=policy_id, partner=owner.partner_id or "", tenant=owner.tenant_id if scope == "tenant" else None,
                    scope=scope, name=fields["name"], description=fields["description"],
                    rules=json.dumps(fields["rules"]), active=fields.get("is_active", True), actor=actor)
                record(s, entry := audit("policy_create", extra={"policy_id": policy_id, "name": fields["name"],
                                                                 "scope": scope, "rule_count": len(fields["rules"])}))
                policy_changed(s, "policy.created", entry, {"policy_id": policy_id, "name": fields["name"],
                                                            "scope": scope, "rule_count": len(fields["rules"])})
        except DatabaseError as exc:
            if self._unique_violation(exc):
                raise ScaiVaultError("conflict", "a policy with this name already exists",
                                     details={"name": fields["name"]}) from None
            raise
        self._changed(row)
        return self.policy_view(row, [])

    def update(self, owner: PolicyOwner, policy_id: str, body: dict, actor: str, audit: AuditFn,
               *, partial: bool, may_change: Callable[[dict], None]) -> dict:
        """PUT (partial=False: rules, name and description replaced) or PATCH; bindings are kept."""
        fields = self._fields(body, partial=partial)
        if not fields:
            raise ScaiVaultError("invalid_policy", "nothing to change")
        from pg8000.exceptions import DatabaseError

        try:
            with self.db.transaction() as s:
                current = self._fetch(s, owner, policy_id, lock=True)
                may_change(current)
                if body.get("scope") not in (None, current["scope"]):
                    raise ScaiVaultError("invalid_policy", "scope is fixed at creation; create a new policy instead")
                sets = ", ".join(f"{k} = CAST(:{k} AS jsonb)" if k == "rules" else f"{k} = :{k}" for k in fields)
                params = {k: (json.dumps(v) if k == "rules" else v) for k, v in fields.items()}
                row = s.one(f"UPDATE policies SET {sets}, updated_at = now(), updated_by = :actor "
                            f"WHERE id = :id RETURNING *", id=policy_id, actor=actor, **params)
                record(s, entry := audit("policy_update", extra={"policy_id": policy_id, "fields": sorted(fields),
                                                                 "partial": partial}))
                policy_changed(s, "policy.updated", entry, {"policy_id": policy_id, "name": row["name"],
                                                            "fields": sorted(fields)})
                bindings = s.query("SELECT * FROM policy_bindings WHERE policy_id = :id ORDER BY created_at, id",
                                   id=policy_id)
        except DatabaseError as exc:
            if self._unique_violation(exc):
                raise ScaiVaultError("conflict", "a policy with this name already exists") from None
            raise
        self._changed(row)
        return self.policy_view(row, bindings)

    def delete(self, owner: PolicyOwner, policy_id: str, force: bool, audit: AuditFn,
               may_change: Callable[[dict], None]) -> dict:
        with self.db.transaction() as s:
            row = self._fetch(s, owner, policy_id, lock=True)
            may_change(row)
            bound = s.scalar("SELECT count(*) FROM policy_bindings WHERE policy_id = :id", id=policy_id)
            if bound and not force:
                raise ScaiVaultError("policy_in_use", "the policy still has bindings; unbind them or pass force=true",
                                     details={"policy_id": policy_id, "binding_count": bound})
            s.execute("DELETE FROM policies WHERE id = :id", id=policy_id)
            record(s, entry := audit("policy_delete", extra={"policy_id": policy_id, "name": row["name"],
                                                             "removed_bindings": bound, "force": force}))
            policy_changed(s, "policy.deleted", entry, {"policy_id": policy_id, "name": row["name"],
                                                        "removed_bindings": bound})
        self._changed(row)
        return {"id": policy_id, "deleted": True, "removed_bindings": bound}

    # ------------------------------------------------------------------ bindings
    def bindings(self, owner: PolicyOwner, policy_id: str, limit: Any = None, cursor: str | None = None) -> dict:
        size = pagination.page_limit(limit)
        after = pagination.decode_cursor(cursor, "bindings")
        if after is not None and not (isinstance(after, str) and len(after) <= 64):
            raise ScaiVaultError("invalid_cursor", "the cursor belongs to another listing; start again without it")
        with self.db.session() as s:
            self._fetch(s, owner, policy_id)
            rows = s.query("SELECT * FROM policy_bindings WHERE policy_id = :id AND (CAST(:after AS text) IS NULL OR id > :after) "
                           "ORDER BY id LIMIT :n", id=policy_id, after=after, n=size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return pagination.page("bindings", [self.binding_view(r) for r in rows], more, rows[-1]["id"] if rows else None)

    def bind(self, owner: PolicyOwner, policy_id: str, body: dict, actor: str, audit: AuditFn,
             may_change: Callable[[dict], None]) -> dict:
        identity_type = body.get("identity_type")
        identity_id = body.get("identity_id")
        if isinstance(identity_id, str) and "\x00" in identity_id:
            raise ScaiVaultError("invalid_policy", "identity_id must not contain NUL characters")
        if identity_type not in IDENTITY_PREFIXES:
            raise ScaiVaultError("invalid_policy", "identity_type must be user, service_account, group or dynamic_engine")
        prefix = IDENTITY_PREFIXES[identity_type]
        if (not isinstance(identity_id, str) or not identity_id.startswith(prefix) or len(identity_id) <= len(prefix)
                or len(identity_id) > 320):
            raise ScaiVaultError("invalid_policy", f"identity_id of a {identity_type} must look like {prefix}<name>")
        expires_at = _parse_time(body.get("expires_at"), "expires_at")
        if expires_at is not None and expires_at <= datetime.now(timezone.utc):
            raise ScaiVaultError("invalid_policy", "expires_at must be in the future")
        from pg8000.exceptions import DatabaseError

        binding_id = _new_id("pb_")
        try:
            with self.db.transaction() as s:
                policy = self._fetch(s, owner, policy_id, lock=True)
                may_change(policy)
                row = s.one("""INSERT INTO policy_bindings (id, policy_id, identity_type, identity_id, expires_at, created_by)
                               VALUES (:id, :policy, :type, :identity, :expires, :actor) RETURNING *""",
                            id=binding_id, policy=policy_id, type=identity_type, identity=identity_id,
                            expires=expires_at, actor=actor)
                record(s, entry := audit("policy_bind", extra={"policy_id": policy_id, "binding_id": binding_id,
                                                               "identity_type": identity_type,
                                                               "identity_id": identity_id, "expires_at": iso(expires_at)}))
                policy_changed(s, "policy.binding.created", entry, dict(entry.extra_data))
        except DatabaseError as exc:
            if self._unique_violation(exc):
                raise ScaiVaultError("conflict", "this identity is already bound to the policy",
                                     details={"policy_id": policy_id, "identity_id": identity_id}) from None
            raise
        self._changed(policy)
        return self.binding_view(row)

    def unbind(self, owner: PolicyOwner, policy_id: str, binding_id: str, audit: AuditFn,
               may_change: Callable[[dict], None]) -> dict:
        with self.db.transaction() as s:
            policy = self._fetch(s, owner, policy_id, lock=True)
            may_change(policy)
            row = s.one("DELETE FROM policy_bindings WHERE id = :id AND policy_id = :policy RETURNING *",
                        id=binding_id, policy=policy_id)
            if row is None:
                raise ScaiVaultError("binding_not_found", "no such binding on this policy",
                                     details={"policy_id": policy_id, "binding_id": binding_id[:64]})
            record(s, entry := audit("policy_unbind", extra={"policy_id": policy_id, "binding_id": binding_id,
                                                             "identity_id": row["identity_id"]}))
            policy_changed(s, "policy.binding.deleted", entry, dict(entry.extra_data))
        self._changed(policy)
        return {"id": binding_id, "deleted": True}

    # ------------------------------------------------------------------ dry run
    def evaluated_policies(self, owner: PolicyOwner, identity_ids: tuple[str, ...], *, partner_only: bool) -> list[dict]:
        """Bound policies with their rules, for the explanation of POST /v1/policies/test."""
        rows = self.load_bound(None if partner_only else owner.tenant_id, owner.partner_id, identity_ids)
        return [{"policy_id": pid, "name": name, "rules": rules, "binding_expires_at": iso(lapse)}
                for pid, name, rules, lapse in rows]
