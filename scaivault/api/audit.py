"""/v1/audit: queries, per-secret and per-identity trails, summary, exports, chain verification."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Literal

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from .. import inputs, pagination
from ..audit import exports, queries, record_now
from ..audit.chain import verify_chain
from ..audit.entry import IDENTITY_TYPES
from ..errors import ScaiVaultError, ValidationFailed
from ..policy.paths import validate_path
from .auditing import entry_for_request
from .authorization import admin, require_grant
from .http import runtime
from .params import SecretPath
from .pipeline import endpoint

bp = Blueprint("audit", __name__)
SYS_AUDIT = "sys/audit"                   # policies granting read here delegate audit queries (a SIEM account)
SYS_AUDIT_EXPORTS = "sys/audit/exports"   # read: poll/download exports; write: start one



# ------------------------------------------------------------------ request parsing

def parse_timestamp(name: str, value: Any, fields: dict[str, str]) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return inputs.parse_timestamp(value)
    except ValueError:
        fields[name] = "must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z"
        return None


def parse_filter(source: dict[str, Any], *, tenant_id: str) -> queries.AuditFilter:
    """The section 7.4 filters from query args (or an export body's `filters`); 422 naming each bad field."""
    fields: dict[str, str] = {}
    since = parse_timestamp("from", source.get("from"), fields)
    until = parse_timestamp("to", source.get("to"), fields)
    if since and until and since > until:
        fields["to"] = "must not be before `from`"
    raw_action = source.get("action")
    actions: tuple[str, ...] = ()
    if raw_action:
        items = raw_action if isinstance(raw_action, list) else str(raw_action).split(",")
        actions = tuple(a.strip() for a in items if isinstance(a, str) and a.strip())
        if len(actions) > 50 or any(len(a) > 64 or "\x00" in a for a in actions):
            fields["action"] = "at most 50 actions of at most 64 characters"
    identity_type = source.get("identity_type") or None
    if identity_type is not None and identity_type not in IDENTITY_TYPES:
        fields["identity_type"] = f"must be one of {', '.join(sorted(IDENTITY_TYPES))}"
    success = source.get("success")
    if isinstance(success, str):
        success = {"true": True, "false": False}.get(success.lower(), "bad")
    if success not in (None, True, False):
        fields["success"] = "must be true or false"
    text = {}
    for name, limit in (("identity_id", 320), ("path_prefix", 512), ("source_ip", 64), ("request_id", 128),
                        ("actor", 400)):
        value = source.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit or "\x00" in value):
            fields[name] = f"must be a string of at most {limit} characters"
        text[name] = value or None
    if fields:
        raise ValidationFailed(fields)
    return queries.AuditFilter(tenant_id=tenant_id, since=since, until=until, actions=actions,
                               identity_type=identity_type, success=success, **text)


def parse_limit() -> int:
    return pagination.page_limit(request.args.get("limit"))


def audited_query(what: str, extra: dict[str, Any] | None = None) -> None:
    """Reads of the audit log are themselves audited (action `audit_query`)."""
    record_now(runtime(), entry_for_request("audit_query", extra={"endpoint": what, **(extra or {})}))


def _filters_used(flt: queries.AuditFilter) -> list[str]:
    return sorted(k for k, v in flt.as_dict().items() if v not in (None, []))


# ------------------------------------------------------------------ queries

@bp.get("/v1/audit/logs")
@endpoint("audit:read", scope="audit:read", authorize=admin(sys=SYS_AUDIT))
def list_logs():
    """Query audit entries (every filter of spec/30 7.4, cursor pagination)."""
    flt = parse_filter(request.args.to_dict(), tenant_id=g.tenant.tenant_id)
    limit = parse_limit()
    page = queries.list_entries(runtime().db, flt, limit=limit, cursor=request.args.get("cursor") or None)
    audited_query("logs", {"filters": _filters_used(flt)})
    return jsonify(page.as_dict())


@bp.get("/v1/audit/secrets/<path:path>")
@endpoint("audit:read", scope="audit:read", authorize=admin(sys=SYS_AUDIT))
def secret_trail(path: str):
    """All access to one secret over time plus a 30-day summary."""
    validate_path(path)
    tenant_id = g.tenant.tenant_id
    flt = parse_filter(request.args.to_dict(), tenant_id=tenant_id)
    flt.secret_path = path
    db = runtime().db
    page = queries.list_entries(db, flt, limit=parse_limit(), cursor=request.args.get("cursor") or None)
    body = {"path": path, **page.as_dict(), "summary": queries.secret_summary(db, tenant_id, path)}
    audited_query("secret_trail")
    return jsonify(body)


@bp.get("/v1/audit/identities/<identity_id>")
@endpoint("audit:read", scope="audit:read", authorize=admin(sys=SYS_AUDIT))
def identity_trail(identity_id: str):
    """Everything one identity did in this tenant, plus a summary (offboarding)."""
    if len(identity_id) > 320 or "\x00" in identity_id:
        raise ValidationFailed({"identity_id": "must be at most 320 characters"})
    tenant_id = g.tenant.tenant_id
    flt = parse_filter(request.args.to_dict(), tenant_id=tenant_id)
    flt.identity_id = identity_id
    db = runtime().db
    page = queries.list_entries(db, flt, limit=parse_limit(), cursor=request.args.get("cursor") or None)
    body = {"identity_id": identity_id, **page.as_dict(),
            "summary": queries.identity_summary(db, tenant_id, identity_id, since=flt.since, until=flt.until)}
    audited_query("identity_trail")
    return jsonify(body)


@bp.get("/v1/audit/summary")
@endpoint("audit:read", scope="audit:read", authorize=admin(sys=SYS_AUDIT))
def summary():
    """Aggregate statistics for a window (default: the last 30 days)."""
    flt = parse_filter(request.args.to_dict(), tenant_id=g.tenant.tenant_id)
    if flt.since is None:
        flt.since = (flt.until or datetime.now(timezone.utc)) - timedelta(days=30)
    body = queries.summary(runtime().db, flt)
    audited_query("summary")
    return jsonify(body)


@bp.get("/v1/audit/verify")
@endpoint("audit:read", scope="audit:read", authorize=admin(sys=SYS_AUDIT))
def verify():
    """Walk this tenant's hash chains (optionally a from/to window) and report the first break.

    `?chain=platform` (super_admin) walks the chain of platform-level entries (no tenant).
    """
    fields: dict[str, str] = {}
    since = parse_timestamp("from", request.args.get("from"), fields)
    until = parse_timestamp("to", request.args.get("to"), fields)
    chain = request.args.get("chain", "tenant")
    if chain not in ("tenant", "platform"):
        fields["chain"] = "must be tenant or platform"
    if fields:
        raise ValidationFailed(fields)
    if chain == "platform" and not g.identity.is_super_admin:
        raise ScaiVaultError("access_denied", "the platform chain is verified by super admins only")
    tenant_id = g.tenant.tenant_id if chain == "tenant" else None
    report = verify_chain(runtime().db, tenant_id, since=since, until=until)
    audited_query("verify", {"valid": report.valid, "entries_checked": report.checked})
    return jsonify(report.as_dict())


# ------------------------------------------------------------------ exports

class StorageDestination(BaseModel):
    """The server's own export storage (the default)."""
    model_config = ConfigDict(extra="forbid")

    type: Literal["storage"] = "storage"
    bucket: str | None = Field(default=None, max_length=255)
    prefix: str | None = Field(default=None, max_length=512)
    credentials_path: SecretPath | None = None


class CloudDestination(BaseModel):
    """A bucket of the tenant's own: its credentials are read from a secret the caller may read."""
    model_config = ConfigDict(extra="forbid")

    type: Literal["s3", "gcs", "azure_blob"]
    bucket: str = Field(min_length=1, max_length=255)
    prefix: str | None = Field(default=None, max_length=512)
    credentials_path: SecretPath


def _destination_type(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("type", "storage")       # `type` may be left out: the server's own storage
    return getattr(value, "type", None)


ExportDestination = Annotated[
    Annotated[StorageDestination, Tag("storage")] | Annotated[CloudDestination, Tag("s3")]
    | Annotated[CloudDestination, Tag("gcs")] | Annotated[CloudDestination, Tag("azure_blob")],
    Discriminator(_destination_type)]


Timestamp = Annotated[str, Field(min_length=1, max_length=64, json_schema_extra={"format": "date-time"})]


class ExportFilters(BaseModel):
    """The filters of spec/30 7.4 (parse_filter decides the values: `from` not after `to`)."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Timestamp | None = Field(default=None, alias="from")
    to: Timestamp | None = None
    action: Annotated[str, Field(max_length=64 * 51)] | Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=50)] | None = None
    identity_id: str | None = Field(default=None, max_length=320)
    identity_type: Literal[tuple(sorted(IDENTITY_TYPES))] | None = None                      # type: ignore[valid-type]
    path_prefix: str | None = Field(default=None, max_length=512)
    success: bool | None = None
    source_ip: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=128)
    actor: str | None = Field(default=None, max_length=400)


class ExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    loc_tags: ClassVar[frozenset[str]] = frozenset({"storage", "s3", "gcs", "azure_blob"})

    from_: Timestamp | None = Field(default=None, alias="from")
    to: Timestamp | None = None
    format: Literal["jsonl", "csv"] = "jsonl"
    filters: ExportFilters = Field(default_factory=lambda: ExportFilters())
    destination: ExportDestination = Field(default_factory=StorageDestination)


def _require_read_permission(path: str) -> None:
    """The requester must be allowed to read the credentials secret the export job will use."""
    require_grant(path, "read")


@bp.post("/v1/audit/export")
@endpoint("audit:export", scope="audit:export", body=ExportBody, status=202,
          response_headers={"Location": "the export's status URL, /v1/audit/exports/{export_id}"},
          authorize=admin(sys=SYS_AUDIT_EXPORTS))
def create_export():
    """Start an export job (202); poll /v1/audit/exports/{id} for its manifest."""
    body: ExportBody = g.body
    destination = body.destination
    if destination.type != "storage":    # bucket and credentials_path are required by CloudDestination
        _require_read_permission(destination.credentials_path)
    source = body.filters.model_dump(by_alias=True, exclude_none=True)
    if body.from_ is not None:
        source["from"] = body.from_
    if body.to is not None:
        source["to"] = body.to
    flt = parse_filter(source, tenant_id=g.tenant.tenant_id)
    rt = runtime()
    row = exports.create_export(
        rt, tenant_id=g.tenant.tenant_id, partner_id=g.tenant.partner_id, requested_by=g.identity.identity_id,
        fmt=body.format, flt=flt, destination=body.destination.model_dump(exclude_none=True),
        audit_entry=entry_for_request("export_created"))
    exports.start_in_background(rt, row["id"])
    response = jsonify({"export_id": row["id"], "status": row["status"],
                        "estimated_records": int(row["estimated_records"])})
    response.status_code = 202
    response.headers["Location"] = f"/v1/audit/exports/{row['id']}"
    return response


@bp.get("/v1/audit/exports")
@endpoint("audit:read", scope="audit:export", authorize=admin(sys=SYS_AUDIT_EXPORTS))   # polling must not eat the 5/min export budget
def list_exports():
    """Export jobs of this tenant, newest first."""
    size = parse_limit()
    after = pagination.decode_cursor(request.args.get("cursor"), "audit_exports")
    if after is not None and not (isinstance(after, list) and len(after) == 2 and all(isinstance(x, str) for x in after)):
        raise ScaiVaultError("invalid_cursor", "the cursor belongs to another listing; start again without it")
    try:
        rows = exports.list_exports(runtime(), g.tenant.tenant_id, size + 1, after)
    except ValueError:
        raise ScaiVaultError("invalid_cursor", "the cursor is not valid; start again without one") from None
    more = len(rows) > size
    rows = rows[:size]
    last = [pagination.timestamp(rows[-1]["created_at"]), rows[-1]["id"]] if rows else None
    return jsonify(pagination.page("exports", [exports.present(r) for r in rows], more, last, kind="audit_exports"))


@bp.get("/v1/audit/exports/<export_id>")
@endpoint("audit:read", scope="audit:export", authorize=admin(sys=SYS_AUDIT_EXPORTS))
def get_export(export_id: str):
    """Status of one export job and, once completed, its manifest."""
    return jsonify(exports.present(exports.get_export(runtime(), g.tenant.tenant_id, export_id)))


@bp.get("/v1/audit/exports/<export_id>/files/<int:number>")
@endpoint("audit:read", scope="audit:export", authorize=admin(sys=SYS_AUDIT_EXPORTS),
          produces=("application/x-ndjson", "text/csv"))
def download_export_file(export_id: str, number: int):
    """One file of a completed export (decrypted from the storage backend)."""
    rt = runtime()
    job = exports.get_export(rt, g.tenant.tenant_id, export_id)
    data = exports.read_part(rt, job, number)
    audited_query("export_download", {"export_id": export_id, "file": number})
    mimetype = "application/x-ndjson" if job["format"] == "jsonl" else "text/csv"
    return Response(data, status=200, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{export_id}-{number:05d}.{job["format"]}"'})
