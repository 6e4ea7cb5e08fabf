"""Trust rules for token exchange (/v1/auth/trust): which foreign tokens become which identity.

Tenant objects, changed by the tenant's admins only; every change is audited. A rule can
never allow a scope its creator's token does not hold (a token never outranks what made it).
"""
from __future__ import annotations

import json
import re
import secrets
from typing import Any, Callable

from ..audit import AuditEntry, record
from ..auth.foreign_jwks import check_url
from ..auth.scopes import ALL_SCOPES
from ..config import parse_duration
from ..errors import ScaiVaultError
from .policies import iso

AuditFn = Callable[..., AuditEntry]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
IDENTITY_RE = re.compile(r"^sa:[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
CLAIM_RE = re.compile(r"^[A-Za-z0-9_:.\-/]{1,64}$")
MAX_CONDITIONS = 20
FORBIDDEN_SCOPES = frozenset({"admin"})          # exchanged workload tokens never administer the platform
TTL_BOUNDS = (60, 12 * 3600)
FIELDS = ("name", "issuer", "jwks_url", "audience", "conditions", "identity", "max_scopes", "ttl")


def _bad(message: str) -> ScaiVaultError:
    return ScaiVaultError("invalid_config", message)


def rule_view(row: dict) -> dict:
    return {"id": row["id"], "name": row["name"], "issuer": row["issuer"], "jwks_url": row["jwks_url"],
            "audience": row["audience"], "conditions": row["conditions"], "identity": row["identity"],
            "max_scopes": row["max_scopes"], "ttl": row["ttl"], "tenant_id": row["tenant_id"],
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}


class TrustRuleService:
    def __init__(self, runtime):
        self.runtime = runtime
        self.db = runtime.db

    def _fields(self, body: dict, creator_scopes: frozenset[str], *, partial: bool) -> dict[str, Any]:
        unknown = set(body) - set(FIELDS)
        if unknown:
            raise _bad(f"unknown field {sorted(unknown)[0]!r}")
        out: dict[str, Any] = {}
        if not partial or "name" in body:
            if not isinstance(body.get("name"), str) or not NAME_RE.match(body["name"]):
                raise _bad("name must be 1-64 letters, digits, '.', '_' or '-'")
            out["name"] = body["name"]
        if not partial or "issuer" in body:
            if not isinstance(body.get("issuer"), str) or len(body["issuer"]) > 512:
                raise _bad("issuer must be the foreign issuer's URL")
            out["issuer"] = check_url(body["issuer"], "issuer")
        if "jwks_url" in body:
            value = body["jwks_url"]
            if value is not None and (not isinstance(value, str) or len(value) > 1024):
                raise _bad("jwks_url must be a URL")
            out["jwks_url"] = check_url(value, "jwks_url") if value else None
        if not partial or "audience" in body:
            if not isinstance(body.get("audience"), str) or not 0 < len(body["audience"]) <= 256:
                raise _bad("audience must be the aud value the foreign tokens carry")
            out["audience"] = body["audience"]
        if not partial or "conditions" in body:
            conditions = body.get("conditions") or {}
            if (not isinstance(conditions, dict) or len(conditions) > MAX_CONDITIONS
                    or not all(isinstance(k, str) and CLAIM_RE.match(k) for k in conditions)
                    or not all(isinstance(v, str) and 0 < len(v) <= 256 for v in conditions.values())):
                raise _bad(f"conditions must map up to {MAX_CONDITIONS} claim names to required values (globs allowed)")
            if not conditions:
                # without one, every token of the issuer qualifies: for GitHub, every repository on GitHub
                raise _bad("conditions needs at least one claim (e.g. repository, or sub for Kubernetes)")
            out["conditions"] = conditions
        if not partial or "identity" in body:
            if not isinstance(body.get("identity"), str) or not IDENTITY_RE.match(body["identity"]):
                raise _bad("identity must be a service account, sa:<name>")
            out["identity"] = body["identity"]
        if not partial or "max_scopes" in body:
            scopes = body.get("max_scopes")
            if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
                raise _bad("max_scopes must be a non-empty list of scopes")
            unknown_scopes = [s for s in scopes if s not in ALL_SCOPES or s in FORBIDDEN_SCOPES]
            if unknown_scopes:
                raise _bad(f"max_scopes may not contain {unknown_scopes[0][:64]!r}")
            not_held = [s for s in scopes if s not in creator_scopes]
            if not_held:
                raise ScaiVaultError("insufficient_scope", "a trust rule cannot allow scopes your token does not hold",
                                     details={"scopes_not_held": not_held})
            out["max_scopes"] = list(dict.fromkeys(scopes))
        if not partial or "ttl" in body:
            raw = body.get("ttl", "1h")
            try:
                ttl = raw if isinstance(raw, int) and not isinstance(raw, bool) else parse_duration(raw or "1h")
            except ValueError:
                raise ScaiVaultError("invalid_duration", "ttl must be a duration such as 15m or 1h") from None
            if not TTL_BOUNDS[0] <= ttl <= TTL_BOUNDS[1]:
                raise ScaiVaultError("invalid_duration", "ttl must be between 1m and 12h")
            out["ttl"] = ttl
        return out

    def _row(self, s, tenant_id: str, rule_id: str, lock: bool = False) -> dict:
        row = s.one("SELECT * FROM trust_rules WHERE tenant_id = :t AND (id = :id OR name = :id)"
                    + (" FOR UPDATE" if lock else ""), t=tenant_id, id=rule_id)
        if row is None:
            raise ScaiVaultError("trust_rule_not_found", "no trust rule with this id or name")
        return row

    def create(self, tenant_id: str, partner_id: str | None, body: dict, creator_scopes: frozenset[str], actor: str,
               audit: AuditFn) -> dict:
        f = self._fields(body, creator_scopes, partial=False)
        from pg8000.exceptions import DatabaseError

        try:
            with self.db.transaction() as s:
                row = s.one("""INSERT INTO trust_rules (id, tenant_id, partner_id, name, issuer, jwks_url, audience,
                                   conditions, identity, max_scopes, ttl, created_by, updated_by)
                               VALUES (:id, :t, :p, :name, :issuer, :jwks, :aud, CAST(:cond AS jsonb), :ident,
                                       CAST(:scopes AS jsonb), :ttl, :actor, :actor) RETURNING *""",
                            id="tr_" + secrets.token_hex(8), t=tenant_id, p=partner_id, name=f["name"],
                            issuer=f["issuer"], jwks=f.get("jwks_url"), aud=f["audience"],
                            cond=json.dumps(f["conditions"]), ident=f["identity"], scopes=json.dumps(f["max_scopes"]),
                            ttl=f["ttl"], actor=actor)
                record(s, audit("trust_rule_change", extra={"operation": "create", "rule_id": row["id"],
                                                            "rule": f["name"], "issuer": f["issuer"],
                                                            "identity": f["identity"]}))
        except DatabaseError as exc:
            if "trust_rules_name" in str(exc):
                raise ScaiVaultError("conflict", "a trust rule with this name exists") from None
            raise
        return rule_view(row)

    def list(self, tenant_id: str) -> dict:
        rows = self.db.query("SELECT * FROM trust_rules WHERE tenant_id = :t ORDER BY name", t=tenant_id)
        return {"rules": [rule_view(r) for r in rows]}

    def get(self, tenant_id: str, rule_id: str) -> dict:
        with self.db.session() as s:
            return rule_view(self._row(s, tenant_id, rule_id))

    def update(self, tenant_id: str, rule_id: str, body: dict, creator_scopes: frozenset[str], actor: str,
               audit: AuditFn) -> dict:
        f = self._fields(body, creator_scopes, partial=True)
        with self.db.transaction() as s:
            current = self._row(s, tenant_id, rule_id, lock=True)
            merged = {**current, **f}
            row = s.one("""UPDATE trust_rules SET name = :name, issuer = :issuer, jwks_url = :jwks, audience = :aud,
                               conditions = CAST(:cond AS jsonb), identity = :ident, max_scopes = CAST(:scopes AS jsonb),
                               ttl = :ttl, updated_at = now(), updated_by = :actor WHERE id = :id RETURNING *""",
                        name=merged["name"], issuer=merged["issuer"], jwks=merged["jwks_url"], aud=merged["audience"],
                        cond=json.dumps(merged["conditions"]), ident=merged["identity"],
                        scopes=json.dumps(merged["max_scopes"]), ttl=merged["ttl"], actor=actor, id=current["id"])
            if f.keys() & {"identity", "max_scopes", "issuer", "audience", "conditions", "jwks_url"}:
                # tokens minted under the old terms must not outlive them
                s.execute("DELETE FROM exchanged_tokens WHERE rule_id = :id", id=current["id"])
            record(s, audit("trust_rule_change", extra={"operation": "update", "rule_id": current["id"],
                                                        "rule": merged["name"], "fields": sorted(f)}))
        self.runtime.authenticator.invalidate()
        return rule_view(row)

    def delete(self, tenant_id: str, rule_id: str, audit: AuditFn) -> dict:
        with self.db.transaction() as s:
            row = self._row(s, tenant_id, rule_id, lock=True)
            s.execute("DELETE FROM trust_rules WHERE id = :id", id=row["id"])   # its tokens go with it
            record(s, audit("trust_rule_change", extra={"operation": "delete", "rule_id": row["id"], "rule": row["name"]}))
        self.runtime.authenticator.invalidate()
        return {"id": row["id"], "name": row["name"], "deleted": True}
