"""Reading the audit log: filtered, cursor-paginated listings and summaries (spec/30 7.4, 7.5).

Every query is scoped to one tenant. Listings are newest first and paginated by keyset on
(ts, id); the cursor is an opaque token of the last entry returned.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import inputs
from ..db import Database
from ..errors import ScaiVaultError
from .entry import format_timestamp

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SECRET_SUMMARY_DAYS = 30
TOP_N = 10

_COLUMNS = ("id, ts, tenant_id, action, identity_type, identity_id, secret_path, source_ip, user_agent, "
            "success, duration_ms, request_id, extra_data")


@dataclass
class AuditFilter:
    """The filters of spec/30 section 7.4 (all optional) within one tenant."""

    tenant_id: str | None
    since: datetime | None = None
    until: datetime | None = None
    actions: tuple[str, ...] = ()
    identity_id: str | None = None
    identity_type: str | None = None
    path_prefix: str | None = None
    secret_path: str | None = None          # exact path (per-secret trail)
    success: bool | None = None
    source_ip: str | None = None
    request_id: str | None = None
    actor: str | None = None                # the principal `<tenant>/<sub>` (issue 9): one identity, not a name

    def where(self) -> tuple[str, dict[str, Any]]:
        """A WHERE clause and its parameters."""
        if self.tenant_id is None:
            clauses, params = ["tenant_id IS NULL"], {}
        else:  # "=" (not IS NOT DISTINCT FROM) so that the tenant indexes apply
            clauses, params = ["tenant_id = :tenant_id"], {"tenant_id": self.tenant_id}
        if self.since is not None:
            clauses.append("ts >= :since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("ts <= :until")
            params["until"] = self.until
        if self.actions:
            clauses.append("action = ANY(CAST(:actions AS text[]))")
            params["actions"] = list(self.actions)
        for name in ("identity_id", "identity_type", "source_ip", "request_id", "secret_path"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} = :{name}")
                params[name] = value
        if self.actor is not None:
            clauses.append("extra_data->>'actor' = :actor")
            params["actor"] = self.actor
        if self.path_prefix:
            clauses.append("secret_path LIKE :path_like")
            params["path_like"] = _like_prefix(self.path_prefix)
        if self.success is not None:
            clauses.append("success = :success")
            params["success"] = self.success
        return " AND ".join(clauses), params

    def as_dict(self) -> dict[str, Any]:
        """The filters for storage with an export job (JSON-safe)."""
        return {"from": format_timestamp(self.since) if self.since else None,
                "to": format_timestamp(self.until) if self.until else None,
                "action": list(self.actions) or None, "identity_id": self.identity_id,
                "identity_type": self.identity_type, "path_prefix": self.path_prefix,
                "success": self.success, "source_ip": self.source_ip, "request_id": self.request_id,
                **({"actor": self.actor} if self.actor is not None else {})}


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class Page:
    logs: list[dict[str, Any]]
    cursor: str | None
    has_more: bool

    def as_dict(self) -> dict[str, Any]:
        return {"logs": self.logs, "cursor": self.cursor, "has_more": self.has_more}


def encode_cursor(ts: datetime, entry_id: str) -> str:
    return inputs.encode_cursor([format_timestamp(ts), entry_id])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(ts, id) of a cursor; invalid_cursor (400) for anything this service did not issue."""
    message = "the cursor is not valid; start again without one"
    try:
        ts_text, entry_id = inputs.decode_cursor(cursor, message)
        ts = datetime.strptime(ts_text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        if not isinstance(entry_id, str) or not entry_id.startswith("log_") or len(entry_id) > 64:
            raise ValueError
    except (ValueError, TypeError):
        raise ScaiVaultError("invalid_cursor", message) from None
    return ts, entry_id


def present(row: dict[str, Any]) -> dict[str, Any]:
    """An audit row as the API shows it (spec/30 section 7.1 plus tenant_id)."""
    return {
        "id": row["id"],
        "timestamp": format_timestamp(row["ts"]),
        "tenant_id": row["tenant_id"],
        "action": row["action"],
        "identity_type": row["identity_type"],
        "identity_id": row["identity_id"],
        "secret_path": row["secret_path"],
        "source_ip": row["source_ip"],
        "user_agent": row["user_agent"],
        "success": row["success"],
        "duration_ms": row["duration_ms"],
        "request_id": row["request_id"],
        "extra_data": row["extra_data"] or {},
    }


def list_entries(db: Database, flt: AuditFilter, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """One page of entries matching `flt`, newest first."""
    where, params = flt.where()
    if cursor:
        ts, entry_id = decode_cursor(cursor)
        where += " AND (ts, id) < (:cursor_ts, :cursor_id)"
        params.update(cursor_ts=ts, cursor_id=entry_id)
    rows = db.read_query(f"SELECT {_COLUMNS} FROM audit_log WHERE {where} ORDER BY ts DESC, id DESC LIMIT :limit",
                         limit=limit + 1, **params)
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if has_more and rows else None
    return Page([present(r) for r in rows], next_cursor, has_more)


def iter_entries(db: Database, flt: AuditFilter, batch: int = MAX_LIMIT):
    """Every entry matching `flt`, oldest first, fetched in keyset batches (for exports)."""
    where, params = flt.where()
    after: tuple[datetime, str] | None = None
    while True:
        clause = where + (" AND (ts, id) > (:after_ts, :after_id)" if after else "")
        extra = {"after_ts": after[0], "after_id": after[1]} if after else {}
        rows = db.read_query(f"SELECT {_COLUMNS} FROM audit_log WHERE {clause} ORDER BY ts, id LIMIT :limit",
                             limit=batch, **params, **extra)
        for row in rows:
            yield present(row)
        if len(rows) < batch:
            return
        after = (rows[-1]["ts"], rows[-1]["id"])


def count_entries(db: Database, flt: AuditFilter) -> int:
    where, params = flt.where()
    return int(db.read_query(f"SELECT count(*) AS n FROM audit_log WHERE {where}", **params)[0]["n"])


# ------------------------------------------------------------------------ summaries

def summary(db: Database, flt: AuditFilter) -> dict[str, Any]:
    """Aggregate statistics over `flt`: total_events first, then breakdowns."""
    where, params = flt.where()
    totals = db.read_query(
        f"SELECT count(*) AS total, count(*) FILTER (WHERE success) AS ok, "
        f"count(DISTINCT identity_id) AS identities, count(DISTINCT secret_path) AS secrets, "
        f"min(ts) AS first_ts, max(ts) AS last_ts FROM audit_log WHERE {where}", **params)[0]
    by_action = db.read_query(
        f"SELECT action, count(*) AS n FROM audit_log WHERE {where} GROUP BY action ORDER BY n DESC, action", **params)
    by_type = db.read_query(
        f"SELECT coalesce(identity_type, 'unknown') AS t, count(*) AS n FROM audit_log WHERE {where} "
        f"GROUP BY 1 ORDER BY n DESC, 1", **params)
    top_identities = db.read_query(
        f"SELECT identity_id, identity_type, count(*) AS n, count(*) FILTER (WHERE NOT success) AS failed, "
        f"max(ts) AS last_ts FROM audit_log WHERE {where} AND identity_id IS NOT NULL "
        f"GROUP BY identity_id, identity_type ORDER BY n DESC, identity_id LIMIT {TOP_N}", **params)
    top_secrets = db.read_query(
        f"SELECT secret_path, count(*) AS n, count(*) FILTER (WHERE action = 'read') AS reads, max(ts) AS last_ts "
        f"FROM audit_log WHERE {where} AND secret_path IS NOT NULL "
        f"GROUP BY secret_path ORDER BY n DESC, secret_path LIMIT {TOP_N}", **params)
    by_day = db.read_query(
        f"SELECT to_char(date_trunc('day', ts AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, count(*) AS n, "
        f"count(*) FILTER (WHERE NOT success) AS failed FROM audit_log WHERE {where} GROUP BY 1 ORDER BY 1", **params)
    total = int(totals["total"])
    return {
        "total_events": total,
        "from": format_timestamp(flt.since) if flt.since else None,
        "to": format_timestamp(flt.until) if flt.until else None,
        "successful_events": int(totals["ok"]),
        "failed_events": total - int(totals["ok"]),
        "unique_identities": int(totals["identities"]),
        "unique_secrets": int(totals["secrets"]),
        "first_event_at": format_timestamp(totals["first_ts"]) if totals["first_ts"] else None,
        "last_event_at": format_timestamp(totals["last_ts"]) if totals["last_ts"] else None,
        "by_action": {r["action"]: int(r["n"]) for r in by_action},
        "by_identity_type": {r["t"]: int(r["n"]) for r in by_type},
        "top_identities": [{"identity_id": r["identity_id"], "identity_type": r["identity_type"],
                            "events": int(r["n"]), "failed": int(r["failed"]),
                            "last_event_at": format_timestamp(r["last_ts"])} for r in top_identities],
        "top_secrets": [{"secret_path": r["secret_path"], "events": int(r["n"]), "reads": int(r["reads"]),
                         "last_event_at": format_timestamp(r["last_ts"])} for r in top_secrets],
        "by_day": [{"date": r["day"], "events": int(r["n"]), "failed": int(r["failed"])} for r in by_day],
    }


def secret_summary(db: Database, tenant_id: str, path: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Who touched one secret over the last 30 days (answers "who read this secret")."""
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(days=SECRET_SUMMARY_DAYS)
    rows = db.read_query(
        "SELECT identity_id, identity_type, count(*) FILTER (WHERE action = 'read' AND success) AS reads, "
        "count(*) FILTER (WHERE action <> 'read' AND success) AS changes, "
        "count(*) FILTER (WHERE NOT success) AS denied, max(ts) AS last_ts "
        "FROM audit_log WHERE tenant_id = :t AND secret_path = :p AND ts >= :since "
        "GROUP BY identity_id, identity_type ORDER BY max(ts) DESC LIMIT 100",
        t=tenant_id, p=path, since=since)
    by_action = db.read_query(
        "SELECT action, count(*) AS n FROM audit_log WHERE tenant_id = :t AND secret_path = :p AND ts >= :since "
        "GROUP BY action ORDER BY n DESC, action", t=tenant_id, p=path, since=since)
    last_read = db.read_query(
        "SELECT max(ts) AS ts FROM audit_log WHERE tenant_id = :t AND secret_path = :p AND ts >= :since "
        "AND action = 'read' AND success", t=tenant_id, p=path, since=since)[0]["ts"]
    return {
        "window_days": SECRET_SUMMARY_DAYS,
        "total_events": sum(int(r["n"]) for r in by_action),
        "by_action": {r["action"]: int(r["n"]) for r in by_action},
        "reads": sum(int(r["reads"]) for r in rows),
        "denied": sum(int(r["denied"]) for r in rows),
        "unique_identities": len(rows),
        "last_read_at": format_timestamp(last_read) if last_read else None,
        "identities": [{"identity_id": r["identity_id"], "identity_type": r["identity_type"],
                        "reads": int(r["reads"]), "changes": int(r["changes"]), "denied": int(r["denied"]),
                        "last_access_at": format_timestamp(r["last_ts"])} for r in rows],
    }


def identity_summary(db: Database, tenant_id: str, identity_id: str, *, since: datetime | None = None,
                     until: datetime | None = None) -> dict[str, Any]:
    """Everything one identity did in the tenant (offboarding): counts, first/last, secrets touched."""
    flt = AuditFilter(tenant_id=tenant_id, identity_id=identity_id, since=since, until=until)
    where, params = flt.where()
    totals = db.read_query(
        f"SELECT count(*) AS total, count(*) FILTER (WHERE NOT success) AS failed, "
        f"count(DISTINCT secret_path) AS secrets, min(ts) AS first_ts, max(ts) AS last_ts, "
        f"count(DISTINCT source_ip) AS ips FROM audit_log WHERE {where}", **params)[0]
    by_action = db.read_query(
        f"SELECT action, count(*) AS n FROM audit_log WHERE {where} GROUP BY action ORDER BY n DESC, action", **params)
    secrets = db.read_query(
        f"SELECT secret_path, count(*) AS n, count(*) FILTER (WHERE action = 'read') AS reads, max(ts) AS last_ts "
        f"FROM audit_log WHERE {where} AND secret_path IS NOT NULL GROUP BY secret_path "
        f"ORDER BY max(ts) DESC LIMIT 100", **params)
    return {
        "total_events": int(totals["total"]),
        "failed_events": int(totals["failed"]),
        "unique_secrets": int(totals["secrets"]),
        "unique_source_ips": int(totals["ips"]),
        "first_event_at": format_timestamp(totals["first_ts"]) if totals["first_ts"] else None,
        "last_event_at": format_timestamp(totals["last_ts"]) if totals["last_ts"] else None,
        "by_action": {r["action"]: int(r["n"]) for r in by_action},
        "secrets": [{"secret_path": r["secret_path"], "events": int(r["n"]), "reads": int(r["reads"]),
                     "last_event_at": format_timestamp(r["last_ts"])} for r in secrets],
    }
