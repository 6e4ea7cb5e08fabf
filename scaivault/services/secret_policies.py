"""Secret policies (value-generation recipes, spec/20 section 6): storage and generation.

A recipe is configuration, not secret material: `generate` returns fresh values and stores
nothing. Writing a generated value as a secret version goes through the secret store.
"""
from __future__ import annotations

import json
import secrets as pyrandom
from dataclasses import dataclass
from typing import Any, Callable

from pg8000.exceptions import DatabaseError

from ..audit import AuditEntry, record
from ..db import Database, Session
from ..errors import ScaiVaultError, ValidationFailed
from .. import pagination
from ..lifecycle.generators import POLICY_TYPES, generate, validate_fields
from .policies import iso, page_limit

AuditFn = Callable[..., AuditEntry]
MAX_NAME = 128


@dataclass(frozen=True)
class TenantScope:
    """The tenant (and its partner) an operation acts in."""

    tenant_id: str
    partner_id: str | None


def new_id(prefix: str) -> str:
    return prefix + pyrandom.token_hex(8)


def unique_violation(exc: Exception) -> bool:
    args = getattr(exc, "args", ())
    return bool(args) and isinstance(args[0], dict) and args[0].get("C") == "23505"


def string_cursor(cursor: str | None, kind: str) -> str | None:
    """The string keyset position of a cursor signed for the listing `kind` (scaivault.pagination)."""
    after = pagination.decode_cursor(cursor, kind)
    if after is not None and (not isinstance(after, str) or len(after) > 1024):
        raise ScaiVaultError("invalid_cursor", "the cursor belongs to another listing; start again without it")
    return after


def keyset_page(envelope: str, rows: list[dict], size: int, view: Callable[[dict], dict], kind: str,
                key: str = "id") -> dict:
    """The shared envelope `{envelope: [...], "cursor", "has_more"}` from rows fetched with LIMIT size + 1,
    ordered by `key`; the cursor is signed for the listing `kind` (another listing's cursor is refused)."""
    has_more = len(rows) > size
    rows = rows[:size]
    return pagination.page(envelope, [view(r) for r in rows], has_more, str(rows[-1][key]) if rows else None,
                           kind=kind)


def policy_view(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "description": row["description"],
            "policy_type": row["policy_type"], "fields": row["fields"], "is_active": row["is_active"],
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


def _validate(body: dict, partial: bool) -> dict:
    out: dict[str, Any] = {}
    problems: dict[str, str] = {}
    if "name" in body or not partial:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or "\x00" in name:
            problems["name"] = f"is required: 1..{MAX_NAME} characters"
        else:
            out["name"] = name.strip()
    if "description" in body:
        desc = body.get("description") or ""
        if not isinstance(desc, str) or len(desc) > 2000 or "\x00" in desc:
            problems["description"] = "must be a string of at most 2000 characters"
        else:
            out["description"] = desc
    if "policy_type" in body or not partial:
        ptype = body.get("policy_type") or "custom"
        if ptype not in POLICY_TYPES:
            problems["policy_type"] = f"must be one of {', '.join(POLICY_TYPES)}"
        out["policy_type"] = ptype
    if "is_active" in body:
        if not isinstance(body["is_active"], bool):
            problems["is_active"] = "must be true or false"
        out["is_active"] = body["is_active"]
    if problems:
        raise ValidationFailed(problems)
    if "fields" in body or not partial:
        if "\\u0000" in json.dumps(body.get("fields")):
            raise ValidationFailed({"fields": "must not contain NUL characters"})
        out["fields"] = validate_fields(body.get("fields"))
    return out


class SecretPolicyService:
    """CRUD for a tenant's recipes, and generation from them."""

    def __init__(self, db: Database):
        self.db = db

    def fetch(self, s: Session, scope: TenantScope, policy_id: str) -> dict:
        row = s.one("SELECT * FROM secret_policies WHERE id = :id AND tenant_id = :tenant",
                    id=policy_id, tenant=scope.tenant_id)
        if row is None:
            raise ScaiVaultError("secret_policy_not_found", "no such secret policy",
                                 details={"secret_policy_id": str(policy_id)[:64]})
        return row

    def get(self, scope: TenantScope, policy_id: str) -> dict:
        with self.db.session() as s:
            return policy_view(self.fetch(s, scope, policy_id))

    def list(self, scope: TenantScope, limit: Any, cursor: str | None) -> dict:
        size = page_limit(limit)
        after = string_cursor(cursor, "secret_policies")
        rows = self.db.query("""SELECT * FROM secret_policies WHERE tenant_id = :tenant
                                   AND (CAST(:after AS text) IS NULL OR id > :after) ORDER BY id LIMIT :n""",
                             tenant=scope.tenant_id, after=after, n=size + 1)
        return keyset_page("secret_policies", rows, size, policy_view, kind="secret_policies")

    def create(self, scope: TenantScope, body: dict, actor: str, audit: AuditFn) -> dict:
        fields = _validate(body, partial=False)
        try:
            with self.db.transaction() as s:
                row = s.one("""INSERT INTO secret_policies (id, tenant_id, partner_id, name, description, policy_type,
                                                            fields, is_active, created_by)
                               VALUES (:id, :tenant, :partner, :name, :description, :ptype, CAST(:fields AS jsonb),
                                       :active, :actor) RETURNING *""",
                            id=new_id("sp_"), tenant=scope.tenant_id, partner=scope.partner_id, name=fields["name"],
                            description=fields.get("description", ""), ptype=fields["policy_type"],
                            fields=json.dumps(fields["fields"]), active=fields.get("is_active", True), actor=actor)
                record(s, audit("secret_policy_create", extra={"secret_policy_id": row["id"], "name": row["name"]}))
        except DatabaseError as exc:
            if unique_violation(exc):
                raise ScaiVaultError("conflict", "a secret policy with this name exists",
                                     details={"name": fields["name"]}) from None
            raise
        return policy_view(row)

    def update(self, scope: TenantScope, policy_id: str, body: dict, audit: AuditFn) -> dict:
        fields = _validate(body, partial=True)
        try:
            with self.db.transaction() as s:
                row = self.fetch(s, scope, policy_id)
                merged = {k: fields.get(k, row[k]) for k in ("name", "description", "policy_type", "fields", "is_active")}
                row = s.one("""UPDATE secret_policies SET name = :name, description = :description,
                                      policy_type = :ptype, fields = CAST(:fields AS jsonb), is_active = :active,
                                      updated_at = now()
                                WHERE id = :id RETURNING *""",
                            id=policy_id, name=merged["name"], description=merged["description"],
                            ptype=merged["policy_type"], fields=json.dumps(merged["fields"]),
                            active=merged["is_active"])
                record(s, audit("secret_policy_update", extra={"secret_policy_id": policy_id, "fields": sorted(fields)}))
        except DatabaseError as exc:
            if unique_violation(exc):
                raise ScaiVaultError("conflict", "a secret policy with this name exists") from None
            raise
        return policy_view(row)

    def delete(self, scope: TenantScope, policy_id: str, force: bool, audit: AuditFn) -> None:
        with self.db.transaction() as s:
            self.fetch(s, scope, policy_id)
            users = [r["id"] for r in s.query(
                "SELECT id FROM rotation_policies WHERE tenant_id = :tenant AND secret_policy_id = :id ORDER BY id",
                tenant=scope.tenant_id, id=policy_id)]
            if users and not force:
                raise ScaiVaultError("secret_policy_in_use", "rotation policies use this secret policy; "
                                     "detach them or pass ?force=true", details={"rotation_policy_ids": users[:50]})
            s.execute("UPDATE rotation_policies SET secret_policy_id = NULL WHERE tenant_id = :tenant "
                      "AND secret_policy_id = :id", tenant=scope.tenant_id, id=policy_id)
            s.execute("UPDATE secrets SET secret_policy_id = NULL WHERE tenant_id = :tenant AND secret_policy_id = :id",
                      tenant=scope.tenant_id, id=policy_id)
            s.execute("DELETE FROM secret_policies WHERE id = :id", id=policy_id)
            record(s, audit("secret_policy_delete", extra={"secret_policy_id": policy_id, "force": force,
                                                           "detached_rotation_policies": users[:50]}))

    def recipe(self, s: Session, scope: TenantScope, policy_id: str) -> list[dict]:
        """The field list of an active policy (404 when unknown, 422 when inactive)."""
        row = self.fetch(s, scope, policy_id)
        if not row["is_active"]:
            raise ValidationFailed({"secret_policy_id": "this secret policy is inactive"})
        return row["fields"]

    def generate(self, scope: TenantScope, policy_id: str, audit: AuditFn) -> dict:
        """Fresh values from the recipe; stores nothing; the audit entry names the policy and fields, no values."""
        with self.db.session() as s:
            fields = self.recipe(s, scope, policy_id)
        data = generate(fields)
        with self.db.session() as s:
            record(s, audit("secret_policy_generate", extra={"secret_policy_id": policy_id, "fields": sorted(data)}))
        return data
