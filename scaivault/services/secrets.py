"""The secret store: versioned, sealed secret values per tenant (or partner), spec/20 sections 3-4.

Every version's data is sealed by the keyring under SealContext(partner, tenant, "secret",
path, version). Writes lock the secret's row, so concurrent writers to one path get
consecutive versions. Reads take one SELECT, open the value in memory, and make the audit
entry durable before the caller sees a byte. Authorisation happens before any of this, in
the blueprint, from the path alone, so a refusal never depends on whether the path exists.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any, Callable, Iterable

from pg8000.exceptions import DatabaseError

from ..audit import AuditEntry, record
from ..audit.writer import (audit_unavailable, count_appended, entry_document, is_audit_failure,
                            read_batch_and_record)
from ..config import Settings, parse_duration
from ..crypto import SealContext, register_sealed_column
from ..db import Database, Session
from ..errors import ScaiVaultError, ValidationFailed
from .. import version_hints
from ..group_commit import GroupCommit
from ..lifecycle.hooks import plain_write_events, secret_changed, secret_read
from ..policy.paths import validate_path
from .policies import decode_cursor, encode_cursor, iso, page_limit

log = logging.getLogger("scaivault.secrets")

register_sealed_column("secret_versions", "sealed_data", key_column="id")

SECRET_TYPES = ("kv", "json", "certificate", "ssh_key", "api_key")
DEFAULT_SECRET_TYPE = "kv"
MAX_VERSIONS_LIMIT = 1000
MAX_METADATA_BYTES = 16 * 1024
MAX_TAGS = 50
TOUCH_INTERVAL = 60.0          # last_accessed_at is written at most once a minute per secret
TOUCH_FLUSH_INTERVAL = 5.0     # pending access times are written in one UPDATE this often per process
LIST_DEFAULT = 100
LIST_MAX = 1000
LIST_SCAN_CAP = 20000           # rows examined per listing page before answering with a cursor
BATCH_EXPANSION_CAP = 1000

AuditFn = Callable[..., AuditEntry]

WRITE_ATTEMPTS = 3              # reseal-and-retry rounds of a one-statement write before the general path
WRITE_MAX_BATCH = 32            # a batch item is a subtransaction: stay well under PostgreSQL's 64 cached per transaction
_WRITE_SQL = "SELECT * FROM sv_write_version(CAST(:doc AS jsonb), :sealed)"
_WRITE_BATCH_SQL = "SELECT * FROM sv_write_batch(CAST(:items AS jsonb), CAST(:sealed AS bytea[]))"
_GENERAL = object()             # a write batch's answer for an item that needs the general path


def _general_path_needed(exc: DatabaseError) -> bool:
    """sv_write_version's SQLSTATE SVW01: a case for the general, locked write."""
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return info.get("C") == "SVW01"


def _check_lowering(may_lower_retention: Callable[[], None] | None) -> None:
    """Lowering retention erases versions, like :destroy: refuse unless the caller's check passes (F11)."""
    if may_lower_retention is None:
        raise ScaiVaultError("access_denied", "lowering max_versions erases history and needs the delete permission")
    may_lower_retention()


@dataclass(frozen=True)
class SecretOwner:
    """Whose secret: a tenant's (tenant_id set) or its partner's own (tenant_id None)."""

    partner_id: str
    tenant_id: str | None

    @property
    def metric_label(self) -> str:
        return self.tenant_id or f"partner:{self.partner_id}"

    def where(self, alias: str = "s") -> str:
        if self.tenant_id is not None:
            return f"{alias}.tenant_id = :owner_tenant"
        return f"{alias}.tenant_id IS NULL AND {alias}.partner_id = :owner_partner"

    def params(self) -> dict[str, Any]:
        return {"owner_tenant": self.tenant_id, "owner_partner": self.partner_id}

    def seal_context(self, path: str, version: int) -> SealContext:
        return SealContext(self.partner_id, self.tenant_id, "secret", path, version)


@dataclass
class WriteRequest:
    """A PUT body after HTTP parsing (options flattened)."""

    data: dict
    secret_type: str | None = None
    metadata: dict | None = None
    max_versions: int | None = None
    expires_in: str | None = None
    rotation_policy_id: str | None = None
    cas: int | None = None
    secret_policy_id: str | None = None
    rotation: dict | None = None    # set by the rotation service: {"policy_id", "cycle", "trigger", "auto"}
    keep_expiry: bool = False       # the PUT named no expires_in: an existing (future) expiry stays (issue 16)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def validate_metadata(metadata: Any, field_name: str = "metadata") -> dict:
    """Non-secret, searchable metadata: description, tags, owner and custom keys, bounded in size."""
    if not isinstance(metadata, dict):
        raise ValidationFailed({field_name: "must be an object"})
    problems: dict[str, str] = {}
    if "description" in metadata and not isinstance(metadata["description"], str):
        problems[f"{field_name}.description"] = "must be a string"
    if "owner" in metadata and not isinstance(metadata["owner"], str):
        problems[f"{field_name}.owner"] = "must be a string"
    tags = metadata.get("tags")
    if tags is not None:
        if (not isinstance(tags, list) or len(tags) > MAX_TAGS
                or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags)):
            problems[f"{field_name}.tags"] = f"must be a list of at most {MAX_TAGS} strings of 1..64 characters"
    text = json.dumps(metadata, separators=(",", ":"))
    if len(text.encode()) > MAX_METADATA_BYTES:
        problems[field_name] = f"must be at most {MAX_METADATA_BYTES} bytes of JSON"
    if "\\u0000" in text:   # PostgreSQL text and jsonb cannot hold NUL
        problems[field_name] = "must not contain NUL characters"
    if problems:
        raise ValidationFailed(problems)
    return metadata


def _merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7396 JSON merge patch: null removes a key, objects merge, anything else replaces."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_patch(out[key], value)
        else:
            out[key] = value
    return out


def _successor(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix` (byte order)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def secret_view(row: dict, path: str) -> dict:
    """The metadata view of a secret row (never its data)."""
    out = {
        "path": path,
        "secret_type": row["secret_type"],
        "version": row["current_version"],
        "metadata": row["metadata"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "expires_at": iso(row["expires_at"]),
        "rotation_policy_id": row["rotation_policy_id"],
        "secret_policy_id": row.get("secret_policy_id"),
        "max_versions": row["max_versions"],
    }
    if "last_accessed_at" in row:
        out["last_accessed_at"] = iso(row["last_accessed_at"])
    if row.get("deleted_at") is not None:
        out["deleted_at"] = iso(row["deleted_at"])
        out["recoverable_until"] = iso(row["recoverable_until"])
    return out


_READ_COLUMNS = """s.id, s.secret_type, s.current_version, s.metadata, s.created_at, s.updated_at, s.expires_at,
       s.rotation_policy_id, s.max_versions, s.last_accessed_at, s.deleted_at, s.recoverable_until,
       v.version AS v_version, v.sealed_data, v.destroyed_at, v.created_at AS v_created_at"""


class SecretStore:
    """Domain operations on secrets; callers pass the owner, the actor and an audit entry builder."""

    def __init__(self, db: Database, keyring, settings: Settings):
        self.db = db
        self.keyring = keyring
        self.settings = settings
        self._touched: dict[int, float] = {}
        self._rotation_table: bool | None = None
        self._touch_lock = threading.Lock()
        self._pending_touches: set[int] = set()
        self._last_flush = time.monotonic()
        self._versions = version_hints.for_process()
        self._flusher: threading.Thread | None = None

    # ================================================================== reads
    def read(self, owner: SecretOwner, path: str, version: int | None, audit: AuditFn) -> dict:
        """The secret with its data; the audit entry (success or not) is durable before return.

        Concurrent reads of this process ride one statement and one commit (group commit,
        `read_batch`): it selects each row and, when readable, appends its success entry; a
        request returns from it only once that statement has committed. The value is opened
        after the connection is back in the pool: opening may need the pool itself (a tenant
        key not yet in the cache). A read that fails records its own entry with success=false
        (a second statement; rare).
        """
        row = self.read_batch.submit({"tenant": owner.tenant_id, "partner": owner.partner_id, "path": path,
                                      "version": version, "entry": audit("read", secret_path=path)})
        if row is not None:
            self._note_version(owner, path, row["current_version"])
        try:
            result = self._open_row(owner, path, version, row)
        except ScaiVaultError as exc:
            with self.db.session() as s:
                record(s, audit("read", secret_path=path, success=False,
                                extra={"error": exc.code, **({"version": version} if version else {})}))
            raise
        if not row["audited"]:   # cannot happen while _open_row and the statement agree; never skip the entry
            with self.db.session() as s:
                record(s, audit("read", secret_path=path, extra={"version": result["version"]}))
        self._touch(None, row)
        _count_read(owner, row["secret_type"])
        secret_read(self.db, owner, path, result["version"], audit)
        return result

    @cached_property
    def read_batch(self) -> GroupCommit:
        """This process's group commit of audited reads (one per process: created after fork)."""
        return GroupCommit(self._run_read_batch, on_batch=_observe_batch)

    def _run_read_batch(self, items: list[dict]) -> list[dict | None]:
        with self.db.session() as s:
            return read_batch_and_record(s, items)

    def _note_version(self, owner: SecretOwner, path: str, version: int) -> None:
        """Remember a secret's current version: the next write seals for it without asking first."""
        self._versions.note((owner.partner_id, owner.tenant_id, path), version)

    def _open_row(self, owner: SecretOwner, path: str, version: int | None, row: dict | None) -> dict:
        if row is None or row["deleted_at"] is not None:
            details: dict[str, Any] = {"path": path}
            if row is not None and row["recoverable_until"] and row["recoverable_until"] > _now():
                details.update(deleted=True, recoverable_until=iso(row["recoverable_until"]))
            raise ScaiVaultError("secret_not_found", "no secret at this path", details=details)
        if row["expires_at"] is not None and row["expires_at"] <= (row.get("checked_at") or _now()):
            raise ScaiVaultError("secret_expired", "the secret expired; write a new version to renew it",
                                 details={"path": path, "expires_at": iso(row["expires_at"])})
        if row["v_version"] is None:
            raise ScaiVaultError("version_not_found", "this version does not exist or has aged out",
                                 details={"path": path, "version": version if version is not None else row["current_version"]})
        if row["sealed_data"] is None:
            raise ScaiVaultError("version_destroyed", "this version was destroyed and cannot be read",
                                 details={"path": path, "version": row["v_version"],
                                          "destroyed_at": iso(row["destroyed_at"])})
        plaintext = self.keyring.open(owner.seal_context(path, row["v_version"]), bytes(row["sealed_data"]))
        view = secret_view(row, path)
        view["version"] = row["v_version"]
        view["current_version"] = row["current_version"]
        view["version_created_at"] = iso(row["v_created_at"])
        view["data"] = json.loads(plaintext)
        return view

    def _touch(self, s: Session | None, row: dict) -> None:
        """Note an access; access times reach the database in one batched UPDATE every few seconds.

        A secret is written at most once a minute (checked against the stored time, so across
        processes too), never once per read; touches of a process that dies unflushed are lost.
        """
        last = row["last_accessed_at"]
        if last is not None and _now() - last < timedelta(seconds=TOUCH_INTERVAL):
            return
        now = time.monotonic()
        with self._touch_lock:
            if now - self._touched.get(row["id"], -1e9) < TOUCH_INTERVAL:
                return
            if len(self._touched) > 100_000:
                self._touched.clear()
            self._touched[row["id"]] = now
            self._pending_touches.add(row["id"])
            if now - self._last_flush < TOUCH_FLUSH_INTERVAL:
                return
            ids, self._pending_touches, self._last_flush = list(self._pending_touches), set(), now
        if s is not None:
            self._write_touches(s, ids)
            return
        # off the request: the read that happens to be due must not pay four more round trips (p99)
        flusher = threading.Thread(target=self._write_touches_alone, args=(ids,), name="scaivault-touches", daemon=True)
        self._flusher = flusher
        flusher.start()

    def _write_touches_alone(self, ids: list[int]) -> None:
        try:
            with self.db.session() as own:
                self._write_touches(own, ids)
        except Exception as exc:   # pool exhausted, database gone: access times are best effort
            log.warning("last_accessed_at not updated", extra={"error": type(exc).__name__})

    def flush_touches(self) -> None:
        """Write pending access times now (tests, shutdown), after any flush already under way."""
        flusher = self._flusher
        if flusher is not None:
            flusher.join(10)
        with self._touch_lock:
            ids, self._pending_touches, self._last_flush = list(self._pending_touches), set(), time.monotonic()
        if ids:
            with self.db.session() as s:
                self._write_touches(s, ids)

    @staticmethod
    def _write_touches(s: Session, ids: list[int]) -> None:
        try:
            s.execute("BEGIN")
            s.execute("SET LOCAL synchronous_commit = off")    # access times may be lost in a crash
            s.execute("""UPDATE secrets SET last_accessed_at = now() WHERE id = ANY(:ids)
                         AND (last_accessed_at IS NULL OR last_accessed_at < now() - interval '60 seconds')""",
                      ids=ids)
            s.execute("COMMIT")
        except Exception as exc:   # access tracking must never fail a read that was audited
            try:
                s.execute("ROLLBACK")
            except Exception:
                pass
            log.warning("last_accessed_at not updated", extra={"error": type(exc).__name__})

    def read_metadata(self, owner: SecretOwner, path: str, audit: AuditFn) -> dict:
        """Metadata, version count and rotation link without the value (permission `list`)."""
        with self.db.session() as s:
            row = s.one(f"""SELECT s.*, (SELECT count(*) FROM secret_versions v WHERE v.secret_id = s.id) AS version_count,
                                   (SELECT count(*) FROM secret_versions v WHERE v.secret_id = s.id
                                      AND v.destroyed_at IS NULL) AS readable_versions
                              FROM secrets s WHERE {owner.where()} AND s.path = :path""",
                        path=path, **owner.params())
            if row is None or (row["deleted_at"] is not None and not (row["recoverable_until"] and row["recoverable_until"] > _now())):
                record(s, audit("list", secret_path=path, success=False,
                                extra={"operation": "metadata", "error": "secret_not_found"}))
                raise ScaiVaultError("secret_not_found", "no secret at this path", details={"path": path})
            record(s, audit("list", secret_path=path, extra={"operation": "metadata"}))
        view = secret_view(row, path)
        view.update(version_count=row["version_count"], readable_versions=row["readable_versions"],
                    created_by=row["created_by"], updated_by=row["updated_by"],
                    rotation={"policy_id": row["rotation_policy_id"], "enabled": row["rotation_policy_id"] is not None},
                    expired=bool(row["expires_at"] and row["expires_at"] <= _now()),
                    deleted=row["deleted_at"] is not None)
        return view

    def versions(self, owner: SecretOwner, path: str, audit: AuditFn) -> dict:
        with self.db.session() as s:
            head = s.one(f"SELECT s.* FROM secrets s WHERE {owner.where()} AND s.path = :path", path=path, **owner.params())
            if head is None:
                record(s, audit("list", secret_path=path, success=False,
                                extra={"operation": "versions", "error": "secret_not_found"}))
                raise ScaiVaultError("secret_not_found", "no secret at this path", details={"path": path})
            rows = s.query("""SELECT version, created_at, created_by, size_bytes, destroyed_at, destroyed_by
                                FROM secret_versions WHERE secret_id = :id ORDER BY version DESC""", id=head["id"])
            record(s, audit("list", secret_path=path, extra={"operation": "versions"}))
        return {
            "path": path, "current_version": head["current_version"], "max_versions": head["max_versions"],
            "deleted": head["deleted_at"] is not None, "recoverable_until": iso(head["recoverable_until"]),
            "versions": [{"version": r["version"], "created_at": iso(r["created_at"]), "created_by": r["created_by"],
                          "size_bytes": r["size_bytes"],
                          "state": "destroyed" if r["destroyed_at"] else "active",
                          "current": r["version"] == head["current_version"],
                          "destroyed_at": iso(r["destroyed_at"]), "destroyed_by": r["destroyed_by"]} for r in rows],
        }

    # ================================================================== writes
    def _encode_data(self, data: Any) -> bytes:
        if not isinstance(data, dict):
            raise ValidationFailed({"data": "must be a JSON object"})
        raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(raw) > self.settings.max_secret_bytes:
            raise ScaiVaultError("payload_too_large",
                                 f"secret data exceeds the limit of {self.settings.max_secret_bytes} bytes",
                                 details={"max_bytes": self.settings.max_secret_bytes, "size_bytes": len(raw)})
        return raw

    @staticmethod
    def _expiry(expires_in: Any) -> datetime | None:
        if expires_in is None:
            return None
        try:
            seconds = parse_duration(expires_in)
        except ValueError:
            raise ScaiVaultError("invalid_duration", "options.expires_in must be a duration such as 30m, 24h or 90d",
                                 details={"field": "options.expires_in"}) from None
        if seconds <= 0:
            raise ScaiVaultError("invalid_duration", "options.expires_in must be positive",
                                 details={"field": "options.expires_in"})
        return _now() + timedelta(seconds=seconds)

    def _lock_row(self, s: Session, owner: SecretOwner, path: str) -> dict | None:
        rows = s.run_prepared(f"SELECT s.* FROM secrets s WHERE {owner.where()} AND s.path = :path FOR UPDATE",
                         path=path, **owner.params())
        return rows[0] if rows else None

    def _lock_or_create(self, s: Session, owner: SecretOwner, path: str, secret_type: str, actor: str) -> dict:
        row = self._lock_row(s, owner, path)
        if row is not None:
            return row
        conflict = ("(tenant_id, path) WHERE tenant_id IS NOT NULL" if owner.tenant_id is not None
                    else "(partner_id, path) WHERE tenant_id IS NULL")
        row = s.one(f"""INSERT INTO secrets (partner_id, tenant_id, path, secret_type, max_versions, created_by, updated_by)
                        VALUES (:partner, :tenant, :path, :type, :maxv, :actor, :actor)
                        ON CONFLICT {conflict} DO NOTHING RETURNING *""",
                    partner=owner.partner_id, tenant=owner.tenant_id, path=path, type=secret_type,
                    maxv=self.settings.secret_max_versions_default, actor=actor)
        # a concurrent creator won: its row is committed now, lock it
        return row if row is not None else self._lock_row(s, owner, path)  # type: ignore[return-value]

    def write(self, owner: SecretOwner, path: str, req: WriteRequest, actor: str, audit: AuditFn,
              may_lower_retention: Callable[[], None] | None = None) -> tuple[dict, bool]:
        """Append a version; returns (view, created). CAS and soft-delete rules apply under the row lock.

        `may_lower_retention` raises unless the caller may erase history (the `delete` permission);
        it is called when options.max_versions lowers an existing secret's retention.
        """
        validate_path(path)
        plaintext = self._encode_data(req.data)
        if req.secret_type is not None and req.secret_type not in SECRET_TYPES:
            raise ScaiVaultError("invalid_secret_type", f"secret_type must be one of {', '.join(SECRET_TYPES)}",
                                 details={"secret_type": str(req.secret_type)[:64]})
        if req.metadata is not None:
            validate_metadata(req.metadata)
        expires_at = self._expiry(req.expires_in)
        # load the sealing key now: fetching it under the row lock would need a second connection
        self.keyring.active_tenant_key(owner.partner_id, owner.seal_context(path, 1).key_scope)
        # the one-statement path takes plain writes only; a lifecycle change (rotation, secret policy)
        # or a retention change (may need the delete permission) takes the locked transaction
        plain = (req.max_versions is None and req.rotation_policy_id is None
                 and req.secret_policy_id is None and req.rotation is None)
        fast = self._write_one_statement(owner, path, req, plaintext, expires_at, actor, audit) if plain else None
        if fast is not None:
            _count_write(owner)
            return fast
        return self._write_locked(owner, path, req, plaintext, expires_at, actor, audit, may_lower_retention)

    def _write_one_statement(self, owner: SecretOwner, path: str, req: WriteRequest, plaintext: bytes,
                             expires_at: datetime | None, actor: str, audit: AuditFn) -> tuple[dict, bool] | None:
        """The common write in one round trip (sv_write_version, migration 0060).

        The new version is sealed for the version this process last saw (or 1 for an unknown
        path); the statement locks the row and writes only if that is still the next version.
        When another writer moved it on, the statement writes nothing and returns the row as it
        is (`written` false; no row: the path is free again), and we reseal for its version and
        try again. None: take the general path (a deleted row, a CAS or rotation-policy check,
        a concurrent creator).
        """
        key = (owner.partner_id, owner.tenant_id, path)
        expected = self._versions.get(key)
        for _ in range(WRITE_ATTEMPTS):
            version = expected + 1
            sealed = self.keyring.seal(owner.seal_context(path, version), plaintext)
            entry = audit("write", secret_path=path,
                          extra={"version": version, "created": expected == 0, "pruned_versions": 0,
                                 **({"cas": req.cas} if req.cas is not None else {})})
            doc = {"tenant": owner.tenant_id, "partner": owner.partner_id, "path": path, "expected": expected,
                   "actor": actor, "size": len(plaintext), "type": req.secret_type,
                   "create_type": req.secret_type or DEFAULT_SECRET_TYPE,
                   "default_maxv": self.settings.secret_max_versions_default, "maxv": req.max_versions,
                   "expires_at": expires_at.isoformat() if expires_at is not None else None,
                   "rotation": req.rotation_policy_id, "cas": req.cas,
                   "audit": entry_document(entry, "pruned_versions")}
            if req.keep_expiry:
                del doc["expires_at"]      # sv_write_version (0070) keeps the row's future expiry
            if req.metadata is not None:
                doc["metadata"] = req.metadata
            # the change's events (issue 11's outbox) join the statement: sv_secret_events
            doc["events"] = plain_write_events(
                path, expected, version, entry, secret_type=req.secret_type or DEFAULT_SECRET_TYPE,
                tags=(req.metadata or {}).get("tags"), expires_at=expires_at)
            # stored undispatched with a NOTIFY only where the tenant has a consumer (migration 0161)
            started = time.perf_counter()
            try:
                row = self.write_batch.submit((json.dumps(doc, separators=(",", ":")), sealed))
            except DatabaseError as exc:
                if is_audit_failure(exc):
                    raise audit_unavailable(entry.stored_values(), exc) from None
                raise
            if row is _GENERAL:
                return None
            if row is None or not row["written"]:      # moved on (or gone): nothing was written
                expected = row["current_version"] if row else 0
                self._versions.note(key, expected)
                continue
            count_appended("write", True, time.perf_counter() - started)
            self._versions.note(key, version)
            return secret_view(row, path), expected == 0
        return None

    @cached_property
    def write_batch(self) -> GroupCommit:
        """This process's group commit of one-statement writes (one per process: created after fork).

        Concurrent writes share one sv_write_batch statement and its commit; each request is
        answered only once that commit is durable. An item's result: its row, None (no row: the
        path is free again), or _GENERAL (take the general, locked write).
        """
        return GroupCommit(self._run_write_batch, max_batch=WRITE_MAX_BATCH,
                           on_batch=lambda size: _observe_batch(size, "write"))

    def _run_write_batch(self, items: list[tuple[str, bytes]]) -> list[dict | object | None]:
        if len(items) == 1:
            # alone, the item needs no subtransaction to keep others' writes: sv_write_version itself
            try:
                with self.db.session() as s:
                    rows = s.run_prepared(_WRITE_SQL, doc=items[0][0], sealed=items[0][1])
            except DatabaseError as exc:
                if _general_path_needed(exc):
                    return [_GENERAL]
                raise
            return [rows[0] if rows else None]
        with self.db.session() as s:
            rows = s.run_prepared(_WRITE_BATCH_SQL, items="[" + ",".join(doc for doc, _ in items) + "]",
                                  sealed=[sealed for _, sealed in items])
        out: list[dict | object | None] = [None] * len(items)
        for row in rows:
            n = row.pop("item") - 1
            out[n] = _GENERAL if row.pop("general") else row
        return out

    def exists(self, owner: SecretOwner, path: str) -> bool:
        """Is there a live (not deleted) secret at `path`? For hints only; never audited as a read."""
        return bool(self.db.query(f"SELECT 1 FROM secrets s WHERE {owner.where()} AND s.path = :path "
                                  "AND s.deleted_at IS NULL", path=path, **owner.params()))

    def _write_locked(self, owner: SecretOwner, path: str, req: WriteRequest, plaintext: bytes,
                      expires_at: datetime | None, actor: str, audit: AuditFn,
                      may_lower_retention: Callable[[], None] | None) -> tuple[dict, bool]:
        """The general write: one transaction, row locked first, every rule checked under the lock."""
        with self.db.transaction() as s:
            row = self._lock_or_create(s, owner, path, req.secret_type or DEFAULT_SECRET_TYPE, actor)
            if row["deleted_at"] is not None:
                if row["recoverable_until"] and row["recoverable_until"] > _now():
                    raise ScaiVaultError("secret_exists", "the path holds a deleted secret that can still be restored; "
                                         "restore it, or delete it permanently first",
                                         details={"path": path, "recoverable_until": iso(row["recoverable_until"])})
                # retention is over: the old secret is gone for good and the path starts afresh
                s.execute("DELETE FROM secrets WHERE id = :id", id=row["id"])
                row = self._lock_or_create(s, owner, path, req.secret_type or DEFAULT_SECRET_TYPE, actor)
            created = row["current_version"] == 0
            if req.cas is not None and req.cas != row["current_version"]:
                raise ScaiVaultError("version_conflict", "the current version differs from options.cas",
                                     details={"path": path, "cas": req.cas, "current_version": row["current_version"]})
            if req.rotation_policy_id is not None and req.rotation_policy_id != row["rotation_policy_id"]:
                self._check_rotation_policy(s, req.rotation_policy_id)
            version = row["current_version"] + 1
            sealed = self.keyring.seal(owner.seal_context(path, version), plaintext)
            max_versions = req.max_versions or row["max_versions"]
            if not created and max_versions < row["max_versions"]:
                _check_lowering(may_lower_retention)
            metadata = req.metadata if req.metadata is not None else row["metadata"]
            if req.keep_expiry and row["expires_at"] is not None and row["expires_at"] > _now():
                expires_at = row["expires_at"]
            updated = s.run_prepared(
                """WITH ins AS (
                       INSERT INTO secret_versions (secret_id, version, partner_id, tenant_id, sealed_data, size_bytes, created_by)
                       VALUES (:id, :version, :partner, :tenant, :sealed, :size, :actor)
                   ), pruned AS (
                       DELETE FROM secret_versions
                        WHERE secret_id = :id AND version <= CAST(:version AS integer) - CAST(:maxv AS integer)
                       RETURNING 1
                   ), upd AS (
                       UPDATE secrets SET current_version = :version, secret_type = :type, metadata = CAST(:metadata AS jsonb),
                              max_versions = :maxv, expires_at = :expires_at, rotation_policy_id = :rotation,
                              updated_at = now(), updated_by = :actor
                        WHERE id = :id RETURNING *
                   )
                   SELECT upd.*, (SELECT count(*) FROM pruned) AS pruned FROM upd""",
                id=row["id"], version=version, partner=owner.partner_id, tenant=owner.tenant_id, sealed=sealed,
                size=len(plaintext), actor=actor, maxv=max_versions,
                type=req.secret_type or (DEFAULT_SECRET_TYPE if created else row["secret_type"]),
                metadata=json.dumps(metadata), expires_at=expires_at,
                rotation=req.rotation_policy_id if req.rotation_policy_id is not None else row["rotation_policy_id"])[0]
            entry = audit("write", secret_path=path,
                          extra={"version": version, "created": created, "pruned_versions": updated["pruned"],
                                 **({"cas": req.cas} if req.cas is not None else {})})
            record(s, entry)
            lifecycle = secret_changed(s, "write", owner, path, entry, before=row, after=updated, req=req)
        self._versions.note((owner.partner_id, owner.tenant_id, path), version)
        _count_write(owner)
        return {**secret_view(updated, path), **lifecycle}, created

    def _check_rotation_policy(self, s: Session, policy_id: str) -> None:
        """404 rotation_policy_not_found for an unknown id, once rotation policies are stored here."""
        if self._rotation_table is None:
            self._rotation_table = bool(s.scalar("SELECT to_regclass('rotation_policies') IS NOT NULL"))
        if self._rotation_table and s.scalar("SELECT 1 FROM rotation_policies WHERE id = :id", id=policy_id) is None:
            raise ScaiVaultError("rotation_policy_not_found", "no such rotation policy",
                                 details={"rotation_policy_id": policy_id})

    def update_metadata(self, owner: SecretOwner, path: str, patch: dict, actor: str, audit: AuditFn,
                        may_lower_retention: Callable[[], None] | None = None) -> dict:
        """PATCH {path}:metadata: merge-patch metadata, change max_versions, rotation link or expiry; no new version.

        Lowering max_versions erases history, so it also needs `may_lower_retention` to pass (see write).
        """
        allowed = {"metadata", "max_versions", "rotation_policy_id", "expires_in"}
        unknown = set(patch) - allowed
        if unknown or not patch:
            raise ValidationFailed({k: "unknown field" for k in sorted(unknown)} or
                                   {"body": f"give at least one of {', '.join(sorted(allowed))}"})
        if "metadata" in patch and not isinstance(patch["metadata"], dict):
            raise ValidationFailed({"metadata": "must be an object (a JSON merge patch)"})
        maxv = patch.get("max_versions")
        if "max_versions" in patch and (not isinstance(maxv, int) or isinstance(maxv, bool)
                                        or not 1 <= maxv <= MAX_VERSIONS_LIMIT):
            raise ValidationFailed({"max_versions": f"must be an integer between 1 and {MAX_VERSIONS_LIMIT}"})
        rotation = patch.get("rotation_policy_id")
        if rotation is not None and (not isinstance(rotation, str) or len(rotation) > 128):
            raise ValidationFailed({"rotation_policy_id": "must be a string or null"})
        with self.db.transaction() as s:
            row = self._lock_row(s, owner, path)
            if row is None or row["deleted_at"] is not None:
                raise ScaiVaultError("secret_not_found", "no secret at this path", details={"path": path})
            if rotation is not None and rotation != row["rotation_policy_id"]:
                self._check_rotation_policy(s, rotation)
            metadata = row["metadata"]
            if "metadata" in patch:
                metadata = validate_metadata(_merge_patch(metadata, patch["metadata"]))
            expires_at = row["expires_at"]
            if "expires_in" in patch:
                expires_at = self._expiry(patch["expires_in"])
            new_max = maxv if "max_versions" in patch else row["max_versions"]
            if new_max < row["max_versions"]:
                _check_lowering(may_lower_retention)
            updated = s.one(
                """WITH pruned AS (
                       DELETE FROM secret_versions
                        WHERE secret_id = :id AND version <= CAST(:current AS integer) - CAST(:maxv AS integer)
                       RETURNING 1
                   ), upd AS (
                       UPDATE secrets SET metadata = CAST(:metadata AS jsonb), max_versions = :maxv, expires_at = :expires_at,
                              rotation_policy_id = :rotation, updated_at = now(), updated_by = :actor
                        WHERE id = :id RETURNING *
                   )
                   SELECT upd.*, (SELECT count(*) FROM pruned) AS pruned FROM upd""",
                id=row["id"], current=row["current_version"], maxv=new_max, metadata=json.dumps(metadata),
                expires_at=expires_at, actor=actor,
                rotation=rotation if "rotation_policy_id" in patch else row["rotation_policy_id"])
            entry = audit("write", secret_path=path, extra={"operation": "metadata_update", "fields": sorted(patch),
                                                            "pruned_versions": updated["pruned"]})
            record(s, entry)
            lifecycle = secret_changed(s, "metadata", owner, path, entry, before=row, after=updated)
        return {**secret_view(updated, path), **lifecycle}

    # ================================================================== delete / restore / destroy
    def delete(self, owner: SecretOwner, path: str, permanent: bool, actor: str, audit: AuditFn) -> dict:
        with self.db.transaction() as s:
            row = self._lock_row(s, owner, path)
            if row is None or (not permanent and row["deleted_at"] is not None):
                raise ScaiVaultError("secret_not_found", "no secret at this path", details={"path": path})
            count = s.scalar("SELECT count(*) FROM secret_versions WHERE secret_id = :id", id=row["id"])
            if permanent:
                s.execute("DELETE FROM secrets WHERE id = :id", id=row["id"])
                result = {"path": path, "permanent": True, "version_count": count, "deleted_at": iso(_now())}
            else:
                updated = s.one("""UPDATE secrets SET deleted_at = now(), deleted_by = :actor,
                                          recoverable_until = now() + make_interval(secs => :retention)
                                    WHERE id = :id RETURNING deleted_at, recoverable_until""",
                                id=row["id"], actor=actor, retention=self.settings.secret_delete_retention)
                result = {"path": path, "permanent": False, "version_count": count,
                          "deleted_at": iso(updated["deleted_at"]), "recoverable_until": iso(updated["recoverable_until"])}
            entry = audit("delete", secret_path=path,
                          extra={"permanent": permanent, "version_count": count,
                                 **({"recoverable_until": result["recoverable_until"]} if not permanent else {})})
            record(s, entry)
            secret_changed(s, "delete", owner, path, entry, before=row, after=None, info=result)
        return result

    def restore(self, owner: SecretOwner, path: str, actor: str, audit: AuditFn) -> dict:
        with self.db.transaction() as s:
            row = self._lock_row(s, owner, path)
            if row is None or (row["deleted_at"] is not None and not (row["recoverable_until"] and row["recoverable_until"] > _now())):
                raise ScaiVaultError("secret_not_found", "no restorable secret at this path", details={"path": path})
            if row["deleted_at"] is not None:
                row = s.one("""UPDATE secrets SET deleted_at = NULL, deleted_by = NULL, recoverable_until = NULL,
                                      updated_at = now(), updated_by = :actor WHERE id = :id RETURNING *""",
                            id=row["id"], actor=actor)
                record(s, audit("write", secret_path=path, extra={"operation": "restore"}))
        return secret_view(row, path)

    def destroy(self, owner: SecretOwner, path: str, versions: list[int], actor: str, audit: AuditFn) -> dict:
        """Erase the ciphertext of the given versions; reads of them answer 410 version_destroyed."""
        wanted = sorted(set(versions))
        with self.db.transaction() as s:
            row = self._lock_row(s, owner, path)
            if row is None:
                raise ScaiVaultError("secret_not_found", "no secret at this path", details={"path": path})
            found = {r["version"]: r["destroyed_at"] for r in s.query(
                "SELECT version, destroyed_at FROM secret_versions WHERE secret_id = :id AND version = ANY(:v)",
                id=row["id"], v=wanted)}
            missing = [v for v in wanted if v not in found]
            if missing:
                raise ScaiVaultError("version_not_found", "some versions do not exist or have aged out; nothing was destroyed",
                                     details={"path": path, "versions": missing})
            fresh = [v for v in wanted if found[v] is None]
            if fresh:
                s.execute("""UPDATE secret_versions SET sealed_data = NULL, destroyed_at = now(), destroyed_by = :actor
                              WHERE secret_id = :id AND version = ANY(:v)""", id=row["id"], v=fresh, actor=actor)
            record(s, audit("delete", secret_path=path, extra={"operation": "destroy", "versions": fresh}))
        return {"path": path, "destroyed": fresh, "already_destroyed": [v for v in wanted if v not in fresh]}

    # ================================================================== batch
    def read_many(self, owner: SecretOwner, paths: list[str], version: int | None, audit: AuditFn,
                  include_metadata: bool) -> tuple[dict[str, dict], dict[str, ScaiVaultError]]:
        """Read authorised paths in one SELECT; every outcome is audited before return."""
        if not paths:
            return {}, {}
        with self.db.session() as s:
            rows = {r["path"]: r for r in s.query(
                f"""SELECT s.path, {_READ_COLUMNS} FROM secrets s
                      LEFT JOIN secret_versions v ON v.secret_id = s.id
                           AND v.version = COALESCE(CAST(:version AS integer), s.current_version)
                     WHERE {owner.where()} AND s.path = ANY(:paths)""",
                paths=list(paths), version=version, **owner.params())}
        found: dict[str, dict] = {}
        errors: dict[str, ScaiVaultError] = {}
        entries = []
        for path in paths:
            try:
                view = self._open_row(owner, path, version, rows.get(path))
            except ScaiVaultError as exc:
                errors[path] = exc
                entries.append(audit("read", secret_path=path, success=False, extra={"error": exc.code, "batch": True}))
                continue
            entry = {"data": view["data"], "version": view["version"], "secret_type": view["secret_type"]}
            if include_metadata:
                entry.update({k: view[k] for k in ("metadata", "created_at", "updated_at", "expires_at",
                                                   "rotation_policy_id", "current_version")})
            found[path] = entry
            entries.append(audit("read", secret_path=path, extra={"version": view["version"], "batch": True}))
        with self.db.transaction() as s:
            for entry in entries:
                record(s, entry)
        for path in found:
            self._touch(None, rows[path])
            _count_read(owner, rows[path]["secret_type"])
            secret_read(self.db, owner, path, found[path]["version"], audit)
        return found, errors


    def metadata_many(self, owner: SecretOwner, paths: Iterable[str], audit: AuditFn,
                      denied: list[str] | None = None) -> dict[str, dict]:
        """Metadata of existing, live paths (missing ones are simply absent); one audit entry names the refusals."""
        paths = list(paths)
        with self.db.session() as s:
            rows = s.query(f"""SELECT s.*, (SELECT count(*) FROM secret_versions v WHERE v.secret_id = s.id)
                                      AS version_count
                                 FROM secrets s WHERE {owner.where()} AND s.path = ANY(:paths) AND s.deleted_at IS NULL""",
                           paths=paths, **owner.params()) if paths else []
            record(s, audit("list", success=not denied or bool(paths),
                            extra={"operation": "batch_metadata", "paths": len(paths), "found": len(rows),
                                   **({"denied": denied[:100]} if denied else {})}))
        out = {}
        for r in rows:
            view = secret_view(r, r["path"])
            view["version_count"] = r["version_count"]
            out[r["path"]] = view
        return out

    def expand_pattern(self, owner: SecretOwner, literal_prefix: str, matches: Callable[[str], bool],
                       visible: Callable[[str], bool], cap: int,
                       pattern_regex: str | None = None) -> tuple[list[str], bool]:
        """Live paths under `literal_prefix` that match and are visible, in path order, at most `cap`."""
        out: list[str] = []
        after = ""
        scanned = 0
        while True:
            rows = self._range(owner, literal_prefix, after, 1000, {"path_regex": pattern_regex})
            for r in rows:
                if matches(r["path"]) and visible(r["path"]):
                    out.append(r["path"])
                    if len(out) >= cap:
                        return out, True
            scanned += len(rows)
            if len(rows) < 1000 or scanned >= LIST_SCAN_CAP * 5:
                return out, len(rows) == 1000
            after = rows[-1]["path"]

    # ================================================================== listing
    @staticmethod
    def _where(owner: SecretOwner, prefix: str, filters: dict) -> tuple[list[str], dict[str, Any]]:
        """WHERE terms and parameters of a listing: owner, prefix range and filters (no position)."""
        where = [owner.where()]
        params: dict[str, Any] = dict(owner.params())
        if prefix:
            where.append("s.path >= :lo AND s.path < :hi")
            params.update(lo=prefix, hi=_successor(prefix))
        if not filters.get("include_deleted"):
            where.append("s.deleted_at IS NULL")
        if any("\x00" in (filters.get(k) or "") for k in ("tag", "owner", "q")):
            raise ScaiVaultError("invalid_request", "filters must not contain NUL characters")
        if filters.get("tag"):
            where.append("s.metadata -> 'tags' @> CAST(:tag AS jsonb)")
            params["tag"] = json.dumps([filters["tag"]])
        if filters.get("owner"):
            where.append("s.metadata ->> 'owner' = :mdowner")
            params["mdowner"] = filters["owner"]
        if filters.get("q"):
            where.append("strpos(s.path, :q) > 0")
            params["q"] = filters["q"]
        if filters.get("expires_within") is not None:
            where.append("s.expires_at IS NOT NULL AND s.expires_at <= now() + make_interval(secs => :within)")
            params["within"] = filters["expires_within"]
        if filters.get("path_regex"):
            # the caller's list rules, so rows it may not see are skipped inside PostgreSQL
            where.append("s.path ~ CAST(:path_regex AS text)")
            params["path_regex"] = filters["path_regex"]
        return where, params

    def _range(self, owner: SecretOwner, prefix: str, after: str, limit: int, filters: dict,
               *, columns: str = "s.path", skip_folder: bool = False) -> list[dict]:
        where, params = self._where(owner, prefix, filters)
        params["n"] = limit
        if after:
            if skip_folder:               # jump over the whole folder `after` (ends in '/')
                where.append("s.path >= :after")
                params["after"] = _successor(after)
            else:
                where.append("s.path > :after")
                params["after"] = after
        with self.db.session("read") as s:
            return s.query(f"SELECT {columns} FROM secrets s WHERE {' AND '.join(where)} ORDER BY s.path LIMIT :n",
                           **params)

    def _walk_level(self, owner: SecretOwner, prefix: str, after: str, size: int, filters: dict,
                    columns: str) -> tuple[list[dict], list[str], bool, str]:
        """One level below `prefix` in one statement: a loose index scan that jumps over each folder.

        Returns (secret rows, folders, has_more, last key); only valid when every row the filters keep is
        visible to the caller (admin, or list rules fully pushed into SQL).
        """
        where, params = self._where(owner, prefix, filters)
        cond = " AND ".join(where)
        # the key after `k`: past its whole folder when it lies below the level, else just past k
        nxt = ("CASE WHEN strpos(substr(w.path, :plen + 1), '/') > 0 "
               "THEN substr(w.path, 1, :plen + strpos(substr(w.path, :plen + 1), '/') - 1) || '0' "
               "ELSE w.path || chr(1) END")
        start = (_successor(after) if after.endswith("/") else after + "\x01") if after else prefix
        sql = f"""WITH RECURSIVE w(path, n) AS (
                      SELECT (SELECT s.path FROM secrets s WHERE {cond} AND s.path >= :start ORDER BY s.path LIMIT 1), 1
                    UNION ALL
                      SELECT (SELECT s.path FROM secrets s WHERE {cond} AND s.path >= {nxt} ORDER BY s.path LIMIT 1),
                             w.n + 1
                        FROM w WHERE w.path IS NOT NULL AND w.n <= :size)
                  SELECT path FROM w WHERE path IS NOT NULL ORDER BY n"""
        with self.db.session("read") as s:
            keys = [r["path"] for r in s.query(sql, start=start, plen=len(prefix), size=size, **params)]
            more = len(keys) > size
            keys = keys[:size]
            direct = [k for k in keys if _folder_of(k, prefix) is None]
            rows = {r["path"]: r for r in s.query(
                f"SELECT {columns} FROM secrets s WHERE {owner.where()} AND s.path = ANY(:paths)",
                paths=direct, **owner.params())} if direct else {}
        items: list[dict] = []
        folders: list[str] = []
        last = ""
        for k in keys:
            folder = _folder_of(k, prefix)
            if folder is None:
                items.append(rows[k])
                last = k
            else:
                folders.append(folder)
                last = folder
        return items, folders, more and bool(last), last

    def list(self, owner: SecretOwner, *, prefix: str, delimiter: str | None, limit: Any, cursor: str | None,
             filters: dict, visible: Callable[[str], bool] | None, prefixes: list[str] | None,
             subtree_visible: Callable[[str], bool] | None, audit: AuditFn, exact_visibility: bool = False) -> dict:
        """Keyset-paginated listing; `visible(path)` filters rows the caller may not list (None: all visible).

        `exact_visibility`: every row the filters keep is visible (no deny rules), so a level
        listing can be walked in one statement.
        """
        size = page_limit(limit, LIST_DEFAULT, LIST_MAX)
        after = decode_cursor(cursor) or ""
        if delimiter not in (None, "", "/"):
            raise ScaiVaultError("invalid_request", "delimiter must be '/'")
        columns = ("s.path, s.secret_type, s.current_version, s.metadata, s.created_at, s.updated_at, s.expires_at, "
                   "s.deleted_at, s.recoverable_until")
        if delimiter and exact_visibility:
            rows, folders_found, more, last_key = self._walk_level(owner, prefix, after, size, filters, columns)
            with self.db.session() as s:
                record(s, audit("list", secret_path=prefix or None,
                                extra={"prefix": prefix, "returned": len(rows) + len(folders_found), "delimiter": "/"}))
            return {"secrets": [_list_item(r) for r in rows], "folders": folders_found,
                    "cursor": encode_cursor(last_key) if more else None, "has_more": more}
        full_chunk = min(max(size * 2, 50), 1000)
        # with a delimiter most rows of a chunk are skipped by the jump over their folder:
        # start small after every jump and grow while rows are consumed one by one
        chunk = 1 if delimiter else full_chunk
        if visible is None and not delimiter:
            chunk = full_chunk = size + 1       # every row is shown: fetch the page and one to know there is more
        secrets_out: list[dict] = []
        folders: list[str] = []
        last_key = after
        scanned = 0
        more = False

        def full() -> bool:
            return len(secrets_out) + len(folders) >= size

        ranges = _ranges(prefix, prefixes)
        for range_index, lo in enumerate(ranges):
            if after and ((lo and after >= _successor(lo)) or (after.endswith("/") and lo.startswith(after))):
                continue                                   # this range lies before the cursor
            position = after if after >= lo else ""
            skip = position.endswith("/")
            pending: str | None = None                     # a folder with no listable path seen yet
            while True:
                rows = self._range(owner, lo, position, chunk, filters, columns=columns, skip_folder=skip)
                skip = False
                scanned += len(rows)
                jump = None
                consumed = 0
                for r in rows:
                    consumed += 1
                    path = position = r["path"]
                    folder = _folder_of(path, prefix) if delimiter else None
                    if folder is not None:
                        if visible is None:
                            show = True
                        elif folder != pending and subtree_visible is not None and subtree_visible(folder):
                            show = True
                        else:
                            show = visible(path)
                        if show:
                            folders.append(folder)
                            last_key = jump = folder
                            pending = None
                            break
                        pending = folder
                        continue
                    pending = None
                    if visible is None or visible(path):
                        secrets_out.append(_list_item(r))
                        last_key = path
                        if full():
                            break
                if full():
                    # certain only when rows are left over; else more unless this was the last range's end
                    more = (consumed < len(rows) or len(rows) == chunk or jump is not None
                            or range_index < len(ranges) - 1)
                    break
                if scanned >= LIST_SCAN_CAP:
                    more, last_key = True, position
                    break
                if jump is not None:
                    position, skip, chunk = jump, True, 1
                    continue
                if len(rows) < chunk:
                    break
                chunk = min(chunk * 4, full_chunk)
            if more:
                break
        with self.db.session() as s:
            record(s, audit("list", secret_path=prefix or None,
                            extra={"prefix": prefix, "returned": len(secrets_out) + len(folders),
                                   **({"delimiter": "/"} if delimiter else {})}))
        result: dict[str, Any] = {"secrets": secrets_out, "cursor": encode_cursor(last_key) if more else None,
                                  "has_more": more}
        if delimiter:
            result["folders"] = folders
        return result


def _folder_of(path: str, prefix: str) -> str | None:
    """The folder (ending in '/') one level below `prefix` holding `path`, or None for a direct child."""
    rest = path[len(prefix):]
    cut = rest.find("/")
    return prefix + rest[:cut + 1] if cut >= 0 else None


def _ranges(prefix: str, policy_prefixes: list[str] | None) -> list[str]:
    """Disjoint, sorted literal prefixes to scan: the request prefix narrowed by the caller's policies."""
    if policy_prefixes is None:
        return [prefix]
    out = set()
    for p in policy_prefixes:
        if p.startswith(prefix):
            out.add(p)
        elif prefix.startswith(p):
            out.add(prefix)
    kept: list[str] = []
    for p in sorted(out):
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return kept


def _list_item(row: dict) -> dict:
    item = {"path": row["path"], "secret_type": row["secret_type"], "version": row["current_version"],
            "metadata": row["metadata"], "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
            "expires_at": iso(row["expires_at"])}
    if row["deleted_at"] is not None:
        item["deleted_at"] = iso(row["deleted_at"])
        item["recoverable_until"] = iso(row["recoverable_until"])
    return item


def _count_read(owner: SecretOwner, secret_type: str) -> None:
    try:
        from .. import metrics
        metrics.labelled(metrics.SECRET_READS, owner.metric_label, secret_type).inc()
    except Exception:
        pass


def _observe_batch(size: int, kind: str = "read") -> None:
    try:
        from .. import metrics
        metrics.labelled(metrics.GROUP_COMMIT_SIZE, kind).observe(size)
    except Exception:
        pass


def _count_write(owner: SecretOwner) -> None:
    try:
        from .. import metrics
        metrics.labelled(metrics.SECRET_WRITES, owner.metric_label).inc()
    except Exception:
        pass
