"""Audit exports as background jobs (spec/30 section 7.6).

POST creates a `pending` row (and its `export_created` audit entry, in one transaction); a
runner claims it, streams the matching entries oldest first, and writes them in parts of
PART_RECORDS entries through the configured storage backend, each part sealed under the
tenant's key. The manifest lists the parts; GET /v1/audit/exports/{id}/files/{n} returns one.
A runner that dies leaves a stale heartbeat; `resume_stalled` restarts such jobs.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import secrets
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from ..errors import ScaiVaultError
from . import AuditEntry, record
from .queries import AuditFilter, count_entries, iter_entries

log = logging.getLogger("scaivault.audit.exports")

PART_RECORDS = 10_000
STALE_AFTER = timedelta(minutes=5)
CSV_COLUMNS = ("id", "timestamp", "tenant_id", "action", "identity_type", "identity_id", "secret_path",
               "source_ip", "user_agent", "success", "duration_ms", "request_id", "extra_data")
SEAL_KIND = "audit_export"


def new_export_id() -> str:
    return "exp_" + secrets.token_hex(10)


def create_export(runtime, *, tenant_id: str, partner_id: str | None, requested_by: str | None,
                  fmt: str, flt: AuditFilter, destination: dict[str, Any], audit_entry: AuditEntry) -> dict[str, Any]:
    """Insert the job and its `export_created` audit entry together; returns the job row."""
    export_id = new_export_id()
    estimated = count_entries(runtime.db, flt)
    audit_entry.extra_data = {**audit_entry.extra_data, "export_id": export_id, "format": fmt,
                              "estimated_records": estimated}
    with runtime.db.transaction() as tx:
        row = tx.one(
            "INSERT INTO audit_exports (id, tenant_id, partner_id, requested_by, format, filters, destination, "
            "estimated_records) VALUES (:id, :t, :p, :by, :fmt, CAST(:filters AS jsonb), "
            "CAST(:dest AS jsonb), :est) RETURNING *",
            id=export_id, t=tenant_id, p=partner_id, by=requested_by, fmt=fmt,
            filters=json.dumps(flt.as_dict()), dest=json.dumps(destination), est=estimated)
        record(tx, audit_entry)
    return row


def get_export(runtime, tenant_id: str, export_id: str) -> dict[str, Any]:
    row = runtime.db.one("SELECT * FROM audit_exports WHERE id = :id AND tenant_id = :t", id=export_id, t=tenant_id)
    if row is None:
        raise ScaiVaultError("export_not_found", "no such export in this tenant", details={"export_id": export_id})
    return row


def list_exports(runtime, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
    return runtime.db.query("SELECT * FROM audit_exports WHERE tenant_id = :t ORDER BY created_at DESC, id DESC "
                            "LIMIT :n", t=tenant_id, n=limit)


def present(row: dict[str, Any]) -> dict[str, Any]:
    def iso(value):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None

    return {
        "export_id": row["id"], "status": row["status"], "format": row["format"],
        "estimated_records": int(row["estimated_records"]), "records_written": int(row["records_written"]),
        "filters": row["filters"], "destination": row["destination"], "requested_by": row["requested_by"],
        "created_at": iso(row["created_at"]), "started_at": iso(row["started_at"]),
        "completed_at": iso(row["completed_at"]), "error": row["error"],
        "manifest": row["manifest"] if row["status"] == "completed" else None,
    }


def start_in_background(runtime, export_id: str) -> threading.Thread:
    """Run the export on a thread (a greenlet under gevent) of this process."""
    thread = threading.Thread(target=run_export, args=(runtime, export_id), name=f"audit-export-{export_id}",
                              daemon=True)
    thread.start()
    return thread


def run_export(runtime, export_id: str) -> bool:
    """Claim and run one export; False when another runner holds it or it is finished."""
    claimed = runtime.db.one(
        "UPDATE audit_exports SET status = 'running', started_at = coalesce(started_at, now()), heartbeat_at = now(), "
        "records_written = 0, manifest = '[]'::jsonb "
        "WHERE id = :id AND (status = 'pending' OR (status = 'running' AND heartbeat_at < now() - CAST(:stale AS interval))) "
        "RETURNING *", id=export_id, stale=f"{int(STALE_AFTER.total_seconds())} seconds")
    if claimed is None:
        return False
    try:
        manifest, written = _write_parts(runtime, claimed)
    except Exception as exc:
        log.warning("audit export failed", extra={"export_id": export_id, "error": type(exc).__name__})
        runtime.db.execute("UPDATE audit_exports SET status = 'failed', error = :e, completed_at = now() WHERE id = :id",
                           id=export_id, e=_describe(exc))
        return True
    runtime.db.execute(
        "UPDATE audit_exports SET status = 'completed', completed_at = now(), records_written = :n, "
        "manifest = CAST(:m AS jsonb) WHERE id = :id", id=export_id, n=written, m=json.dumps(manifest))
    return True


def resume_stalled(runtime) -> int:
    """Restart exports whose runner vanished (pending too long, or a stale heartbeat)."""
    rows = runtime.db.query(
        "SELECT id FROM audit_exports WHERE (status = 'pending' AND created_at < now() - interval '1 minute') "
        "OR (status = 'running' AND heartbeat_at < now() - CAST(:stale AS interval))",
        stale=f"{int(STALE_AFTER.total_seconds())} seconds")
    return sum(1 for r in rows if run_export(runtime, r["id"]))


def _filter_of(job: dict[str, Any]) -> AuditFilter:
    f = job["filters"] or {}

    def ts(value):
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc) if value else None

    return AuditFilter(tenant_id=job["tenant_id"], since=ts(f.get("from")), until=ts(f.get("to")),
                       actions=tuple(f.get("action") or ()), identity_id=f.get("identity_id"),
                       identity_type=f.get("identity_type"), path_prefix=f.get("path_prefix"),
                       success=f.get("success"), source_ip=f.get("source_ip"), request_id=f.get("request_id"),
                       actor=f.get("actor"))


def part_key(job: dict[str, Any], number: int) -> str:
    return f"audit-exports/{job['tenant_id']}/{job['id']}/part-{number:05d}.{job['format']}"


def seal_context(job: dict[str, Any], number: int):
    from ..crypto import SealContext

    return SealContext(partner_id=job["partner_id"] or "", tenant_id=job["tenant_id"], kind=SEAL_KIND,
                       object_id=f"{job['id']}/{number}", version=1)


def _write_parts(runtime, job: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    destination = job["destination"] or {}
    kind = destination.get("type", "storage")
    if kind != "storage":
        put = _DESTINATION_WRITERS[kind](job, _upload_credentials(runtime, job))
    else:
        storage = runtime.storage

        def put(number: int, data: bytes) -> dict[str, Any]:
            key = part_key(job, number)
            storage.put_sealed(seal_context(job, number), key, data)
            return {"key": key}

    manifest: list[dict[str, Any]] = []
    written = 0
    for number, chunk in enumerate(_chunks(iter_entries(runtime.db, _filter_of(job)), PART_RECORDS), start=1):
        data = render(job["format"], chunk)
        where = put(number, data)
        written += len(chunk)
        manifest.append({"file": number, **where, "records": len(chunk), "bytes": len(data),
                         "first_timestamp": chunk[0]["timestamp"], "last_timestamp": chunk[-1]["timestamp"],
                         "sha256": hashlib.sha256(data).hexdigest()})
        runtime.db.execute("UPDATE audit_exports SET heartbeat_at = now(), records_written = :n WHERE id = :id",
                           id=job["id"], n=written)
    return manifest, written


def _object_key(job: dict[str, Any], number: int) -> str:
    prefix = (job["destination"].get("prefix") or "").strip("/")
    return "/".join(p for p in (prefix, job["id"], f"part-{number:05d}.{job['format']}") if p)


def _content_type(job: dict[str, Any]) -> str:
    return "application/x-ndjson" if job["format"] == "jsonl" else "text/csv"


def _upload_failed(where: str, exc: Exception) -> ScaiVaultError:
    # SDK messages may quote request details; name the destination and the error type only
    code = None
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
    return ScaiVaultError("service_unavailable", f"upload to {where} failed ({code or type(exc).__name__})")


def _s3_writer(job: dict[str, Any], credentials: dict[str, Any]):
    """Parts to s3://bucket/prefix/{export_id}/ with access_key_id/secret_access_key from the secret."""
    _require_fields(credentials, "access_key_id", "secret_access_key")
    boto3 = _sdk("boto3", "s3")
    client = boto3.client(
        "s3", aws_access_key_id=credentials["access_key_id"], aws_secret_access_key=credentials["secret_access_key"],
        aws_session_token=credentials.get("session_token"), region_name=credentials.get("region") or "us-east-1",
        endpoint_url=credentials.get("endpoint_url") or None)
    bucket = job["destination"]["bucket"]

    def put(number: int, data: bytes) -> dict[str, Any]:
        key = _object_key(job, number)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=_content_type(job))
        except Exception as exc:
            raise _upload_failed(f"s3://{bucket}", exc) from None
        return {"uri": f"s3://{bucket}/{key}"}

    return put


def _gcs_writer(job: dict[str, Any], credentials: dict[str, Any]):
    """Parts to gs://bucket/...: `service_account` (the key JSON, object or text) from the secret;
    an `endpoint` without a service account talks to an emulator anonymously."""
    storage = _sdk("google.cloud.storage", "gcs")
    info = credentials.get("service_account")
    if isinstance(info, str):
        info = json.loads(info)
    if info:
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_info(info)
    elif credentials.get("endpoint"):
        from google.auth.credentials import AnonymousCredentials

        creds = AnonymousCredentials()
    else:
        raise ScaiVaultError("invalid_config", "the GCS credentials secret needs service_account (or endpoint)")
    endpoint = credentials.get("endpoint")
    client = storage.Client(project=credentials.get("project") or (info or {}).get("project_id") or "scaivault",
                            credentials=creds, client_options={"api_endpoint": endpoint} if endpoint else None)
    bucket_name = job["destination"]["bucket"]
    bucket = client.bucket(bucket_name)

    def put(number: int, data: bytes) -> dict[str, Any]:
        key = _object_key(job, number)
        try:
            bucket.blob(key).upload_from_string(data, content_type=_content_type(job))
        except Exception as exc:
            raise _upload_failed(f"gs://{bucket_name}", exc) from None
        return {"uri": f"gs://{bucket_name}/{key}"}

    return put


def _azure_blob_writer(job: dict[str, Any], credentials: dict[str, Any]):
    """Parts to an Azure Blob container (destination.bucket): `connection_string`, or
    `account_url` with `account_key` or `sas_token`, from the secret."""
    blob = _sdk("azure.storage.blob", "azure_blob")
    kwargs = {"api_version": credentials["api_version"]} if credentials.get("api_version") else {}
    if credentials.get("connection_string"):
        service = blob.BlobServiceClient.from_connection_string(credentials["connection_string"], **kwargs)
    elif credentials.get("account_url") and (credentials.get("account_key") or credentials.get("sas_token")):
        service = blob.BlobServiceClient(credentials["account_url"],
                                         credential=credentials.get("account_key") or credentials["sas_token"], **kwargs)
    else:
        raise ScaiVaultError("invalid_config", "the Azure credentials secret needs connection_string, or account_url "
                                               "with account_key or sas_token")
    container_name = job["destination"]["bucket"]
    container = service.get_container_client(container_name)

    def put(number: int, data: bytes) -> dict[str, Any]:
        key = _object_key(job, number)
        try:
            container.upload_blob(key, data, overwrite=True,
                                  content_settings=blob.ContentSettings(content_type=_content_type(job)))
        except Exception as exc:
            raise _upload_failed(f"azure container {container_name}", exc) from None
        return {"uri": f"azure://{container_name}/{key}"}

    return put


_DESTINATION_WRITERS = {"s3": _s3_writer, "gcs": _gcs_writer, "azure_blob": _azure_blob_writer}


def _sdk(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ScaiVaultError("invalid_config", f"{extra} export destinations need pip install 'scaivault[{extra}]'") from None


def _require_fields(credentials: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if not credentials.get(n)]
    if missing:
        raise ScaiVaultError("invalid_config", f"the credentials secret lacks {', '.join(missing)}")


def _upload_credentials(runtime, job: dict[str, Any]) -> dict[str, Any]:
    """The secret at destination.credentials_path, read (and audited) as the requester."""
    from ..services.secrets import SecretOwner

    path = job["destination"].get("credentials_path")
    owner = SecretOwner(job["partner_id"] or "", job["tenant_id"])

    def audit(action: str, *, secret_path: str | None = None, success: bool = True,
              extra: dict[str, Any] | None = None) -> AuditEntry:
        return AuditEntry(action=action, tenant_id=job["tenant_id"], partner_id=job["partner_id"],
                          identity_type="system", identity_id=job["requested_by"], secret_path=secret_path,
                          success=success, extra_data={**(extra or {}), "purpose": "audit_export",
                                                       "export_id": job["id"]})

    data = runtime.secret_store.read(owner, path, None, audit)["data"]
    if not isinstance(data, dict):
        raise ScaiVaultError("invalid_config", f"the secret {path} must hold a JSON object of credentials")
    return data


def read_part(runtime, job: dict[str, Any], number: int) -> bytes:
    entry = next((m for m in job["manifest"] or [] if m["file"] == number), None)
    if job["status"] != "completed" or entry is None:
        raise ScaiVaultError("not_found", "no such export file", details={"file": number})
    if "key" not in entry:
        raise ScaiVaultError("not_found", "this export was written to its destination bucket",
                             details={"file": number, "uri": entry.get("uri")})
    return runtime.storage.get_opened(seal_context(job, number), entry["key"])


def render(fmt: str, entries: list[dict[str, Any]]) -> bytes:
    """jsonl: one entry per line; csv: flat columns with extra_data as JSON text."""
    if fmt == "jsonl":
        return "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in entries).encode()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        row = []
        for column in CSV_COLUMNS:
            value = e.get(column)
            if column == "extra_data":
                value = json.dumps(value or {}, separators=(",", ":"), sort_keys=True)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            row.append(_csv_safe("" if value is None else str(value)))
        writer.writerow(row)
    return out.getvalue().encode()


def _csv_safe(text: str) -> str:
    # a cell starting with = + - @ is run as a formula by spreadsheet programs
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _describe(exc: Exception) -> str:
    if isinstance(exc, ScaiVaultError):
        return f"{exc.code}: {exc.message}"[:300]
    return type(exc).__name__
