"""Read-only views of the key hierarchy for operators: versions and states, never material."""
from __future__ import annotations

from typing import Any

from ..pagination import timestamp
from .context import PARTNER_SCOPE


def _iso(value) -> str | None:
    return timestamp(value)


def key_status(db, *, partner_id: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Root records, partner and tenant key versions, recent rotations; `partner_id` narrows it."""
    roots = db.query("SELECT version, provider, key_ref, secondary_key_ref, status, created_at, activated_at, "
                     "retired_at FROM kms_roots ORDER BY version DESC")
    where, params = ("WHERE partner_id = :p", {"p": partner_id}) if partner_id else ("", {})
    partners = db.query(f"SELECT partner_id, root_version, wrapped_secondary IS NOT NULL AS has_secondary, created_at, "
                        f"rewrapped_at FROM partner_keys {where} ORDER BY partner_id LIMIT :n", n=limit, **params)
    tenant_rows = db.query("SELECT partner_id, tenant_id, version, status, created_at, retired_at FROM tenant_keys "
                           "WHERE partner_id = ANY(CAST(:ids AS text[])) ORDER BY partner_id, tenant_id, version",
                           ids=[p["partner_id"] for p in partners])
    tenants: dict[str, list] = {}
    for row in tenant_rows:
        tenants.setdefault(row["partner_id"], []).append({
            "tenant_id": row["tenant_id"] if row["tenant_id"] != PARTNER_SCOPE else None,
            "version": row["version"], "status": row["status"],
            "created_at": _iso(row["created_at"]), "retired_at": _iso(row["retired_at"])})
    rotations = db.query("SELECT id, kind, target, status, requested_by, progress, error, started_at, finished_at "
                         "FROM key_rotations ORDER BY id DESC LIMIT 20")
    return {
        "roots": [{**{k: r[k] for k in ("version", "provider", "key_ref", "secondary_key_ref", "status")},
                   "created_at": _iso(r["created_at"]), "activated_at": _iso(r["activated_at"]),
                   "retired_at": _iso(r["retired_at"])} for r in roots],
        "partners": [{"partner_id": p["partner_id"], "root_version": p["root_version"],
                      "has_secondary": p["has_secondary"], "created_at": _iso(p["created_at"]),
                      "rewrapped_at": _iso(p["rewrapped_at"]), "tenant_keys": tenants.get(p["partner_id"], [])}
                     for p in partners],
        "rotations": [{**{k: r[k] for k in ("id", "kind", "target", "status", "requested_by", "progress", "error")},
                       "started_at": _iso(r["started_at"]), "finished_at": _iso(r["finished_at"])} for r in rotations],
    }
