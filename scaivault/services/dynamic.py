"""Dynamic database credentials: engines, roles, leases, the expiry sweeper and root rotation.

Engines point at a database and name the secret holding its root credentials (read through
the secret store, audited, never copied). Every credential is a lease row in PostgreSQL
written BEFORE the database user exists, so a crash can leave a lease without a user (the
revocation is idempotent) but never a user without a lease. Expiry is the sweeper's job:
one runner across instances (advisory lock) revokes what is due, using the partial index on
`due_at`, and retries failed revocations with a back-off, forever, visible in health.
"""
from __future__ import annotations

import json
import logging
import re
import secrets as pyrandom
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from ..audit import AuditEntry, record
from ..config import parse_duration
from ..db import Session
from ..dynamic import EngineError, build_engine, installed_plugins
from ..dynamic.templates import check_statements
from ..errors import ScaiVaultError
from ..lifecycle.hooks import lease_changed
from .policies import decode_cursor, encode_cursor, iso, page_limit
from .secrets import SecretOwner, WriteRequest

log = logging.getLogger("scaivault.dynamic")

AuditFn = Callable[..., AuditEntry]
Clock = Callable[[], datetime]

ENGINE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ROLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENGINE_TYPES = ("database",)
DEFAULT_TTL = "1h"
DEFAULT_MAX_TTL = "24h"
MAX_TTL_CEILING = 366 * 86400
SWEEP_ADVISORY_LOCK = 0x5CA1_0013          # one lease sweeper across every instance
SWEEP_BATCH = 500
PURGE_BATCH = 5000                          # revoked rows deleted per sweep, past LEASE_HISTORY_RETENTION
RETRY_BACKOFF_SECONDS = (30, 60, 120, 300, 600, 1800, 3600)   # then hourly, never given up
SYSTEM_SWEEPER = "system:lease-sweeper"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _duration(value: Any, field: str, default: str | None = None) -> int | None:
    if value is None:
        return parse_duration(default) if default else None
    if isinstance(value, bool):
        raise ScaiVaultError("invalid_duration", f"{field} must be a duration such as 1h or 30m")
    if isinstance(value, int):
        seconds = value
    else:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ScaiVaultError("invalid_duration", f"{field} must be a duration such as 1h or 30m") from None
    if not 1 <= seconds <= MAX_TTL_CEILING:
        raise ScaiVaultError("invalid_duration", f"{field} must be between 1s and 366d")
    return seconds


def backoff_seconds(attempts: int) -> int:
    return RETRY_BACKOFF_SECONDS[min(attempts, len(RETRY_BACKOFF_SECONDS)) - 1] if attempts > 0 else 0


def render_connection_url(template: str, username: str, password: str) -> str:
    return (template.replace("{{username}}", quote(username, safe=""))
                    .replace("{{password}}", quote(password, safe="")))


def check_connection_url(url: Any) -> str:
    """A templated URL that carries no literal password (the password lives in the root secret)."""
    if not isinstance(url, str) or not url or len(url) > 2048 or "\x00" in url:
        raise ScaiVaultError("invalid_config", "config.connection_url must be a URL of at most 2048 characters")
    try:
        parts = urlsplit(render_connection_url(url, "u", "p"))
        parts.port
    except ValueError:
        raise ScaiVaultError("invalid_config", "config.connection_url is not a valid URL") from None
    if parts.password is not None and "{{password}}" not in url:
        raise ScaiVaultError("invalid_config", "config.connection_url must not carry a password; "
                             "use {{username}}:{{password}} and keep them in the root credentials secret")
    return url


def check_allowed_host(connection_url: str, allowed: tuple) -> None:
    """Refuse a target host outside DYNAMIC_ALLOWED_HOSTS (globs, or CIDRs for IP-literal hosts)."""
    if not allowed:
        return
    import fnmatch
    import ipaddress

    host = (urlsplit(render_connection_url(connection_url, "u", "p")).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in allowed:
        if isinstance(entry, str) and fnmatch.fnmatchcase(host, entry):
            return
        if address is not None and not isinstance(entry, str) and address in entry:
            return
    raise ScaiVaultError("invalid_config", "config.connection_url names a host engines may not reach "
                         "(DYNAMIC_ALLOWED_HOSTS)", details={"host": host[:255]})


def new_username(role: str) -> str:
    """v_<role>_<random>: at most 28 characters (MySQL 5.7 allows 32), only [a-z0-9_]."""
    stem = re.sub(r"[^a-z0-9]", "", role.lower())[:12] or "role"
    return f"v_{stem}_{pyrandom.token_hex(6)}"


def new_password() -> str:
    # a letter, a digit and a symbol from every class keeps password policies (validate_password) happy
    return "A1a-" + pyrandom.token_urlsafe(24)


class DynamicService:
    """Engines, roles and leases of every tenant; `clock` is injectable for tests."""

    def __init__(self, runtime, clock: Clock | None = None):
        self.runtime = runtime
        self.db = runtime.db
        self.clock: Clock = clock or utcnow

    # ================================================================== engines: helpers
    def _engine_row(self, s: Session, tenant_id: str, name: str, *, lock: bool = False) -> dict:
        row = s.one("SELECT * FROM dynamic_engines WHERE tenant_id = :t AND name = :n" + (" FOR UPDATE" if lock else ""),
                    t=tenant_id, n=name)
        if row is None:
            raise ScaiVaultError("engine_not_found", "no dynamic engine with this name", details={"engine": name})
        return row

    def engine(self, tenant_id: str, name: str) -> dict:
        with self.db.session() as s:
            return self._engine_row(s, tenant_id, name)

    @staticmethod
    def engine_audit(row: dict, request_id: str | None = None) -> AuditFn:
        """Audit entries written on behalf of the engine's own identity, dynamic:<engine>."""
        def build(action: str, *, secret_path: str | None = None, success: bool = True,
                  extra: dict | None = None) -> AuditEntry:
            return AuditEntry(action=action, tenant_id=row["tenant_id"], partner_id=row["partner_id"],
                              identity_type="system", identity_id="dynamic:" + row["name"], secret_path=secret_path,
                              success=success, request_id=request_id,
                              extra_data={"engine": row["name"], **(extra or {})})
        return build

    def _root_credentials(self, tenant_id: str, partner_id: str | None, path: str, audit: AuditFn) -> tuple[str, str, int]:
        owner = SecretOwner(partner_id or "", tenant_id)
        try:
            view = self.runtime.secret_store.read(owner, path, None, audit)
        except ScaiVaultError as exc:
            if exc.status in (404, 410):
                raise ScaiVaultError("invalid_config", f"the root credentials secret cannot be read: {exc.message}",
                                     details={"root_credentials_path": path}) from None
            raise
        return self._credentials_from(view, path)

    @staticmethod
    def _credentials_from(view: dict, path: str) -> tuple[str, str, int]:
        data = view["data"]
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or not username:
            raise ScaiVaultError("invalid_config", "the root credentials secret must hold string fields username and password",
                                 details={"root_credentials_path": path})
        return username, password, view["version"]

    def _build(self, plugin: str, connection_url: str, username: str, password: str):
        check_allowed_host(connection_url, self.runtime.settings.dynamic_allowed_hosts)
        try:
            return build_engine(self.runtime, plugin, {"connection_url": render_connection_url(connection_url, username, password),
                                                       "username": username, "password": password})
        except EngineError as exc:
            raise ScaiVaultError("invalid_config", _scrub(exc.reason, password)) from None

    def _test_connection(self, engine, password: str) -> None:
        try:
            conn = engine.connect()
        except EngineError as exc:
            raise ScaiVaultError("invalid_config", "test connection failed: " + _scrub(exc.reason, password),
                                 details={"reason": _scrub(exc.reason, password)}) from None
        try:
            conn.execute(["SELECT 1"])
        except EngineError as exc:
            raise ScaiVaultError("invalid_config", "test connection failed: " + _scrub(exc.reason, password)) from None
        finally:
            conn.close()

    def _connected(self, row: dict, audit: AuditFn):
        """(engine, connection, root password) for an engine row; records its health."""
        username, password, _ = self._root_credentials(row["tenant_id"], row["partner_id"], row["root_credentials_path"], audit)
        engine = self._build(row["plugin"], row["connection_url"], username, password)
        try:
            conn = engine.connect()
        except EngineError as exc:
            reason = _scrub(exc.reason, password)
            self._set_health(row, False, reason)
            raise ScaiVaultError("service_unavailable", f"the engine's database is unreachable: {reason}",
                                 details={"engine": row["name"]}) from None
        self._set_health(row, True, None)
        return engine, conn, password

    def _set_health(self, row: dict, healthy: bool, error: str | None) -> None:
        from ..metrics import ENGINE_HEALTH

        ENGINE_HEALTH.labels(engine=row["name"]).set(1 if healthy else 0)
        status = "healthy" if healthy else "unreachable"
        if row.get("health_status") == status and healthy:
            return
        self.db.execute("UPDATE dynamic_engines SET health_status = :st, health_error = :err, health_checked_at = now() "
                        "WHERE id = :id", st=status, err=(error or "")[:500] or None, id=row["id"])
        row["health_status"] = status

    @staticmethod
    def engine_view(row: dict) -> dict:
        return {"name": row["name"], "type": row["type"],
                "config": {"plugin": row["plugin"], "connection_url": row["connection_url"],
                           "root_credentials_path": row["root_credentials_path"]},
                "default_ttl": row["default_ttl"], "max_ttl": row["max_ttl"],
                "health": row["health_status"], "root_rotated_at": iso(row["root_rotated_at"]),
                "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}

    def _engine_fields(self, body: dict, current: dict | None) -> dict:
        config = body.get("config") if body.get("config") is not None else {}
        if not isinstance(config, dict):
            raise ScaiVaultError("invalid_config", "config must be an object")
        unknown = set(config) - {"plugin", "connection_url", "root_credentials_path"}
        if unknown:
            raise ScaiVaultError("invalid_config", f"unknown config field {sorted(unknown)[0]!r}")
        fields: dict[str, Any] = {}
        if current is None or "type" in body:
            etype = body.get("type", "database" if current is None else current["type"])
            if etype not in ENGINE_TYPES:
                raise ScaiVaultError("invalid_config", "type must be database")
            fields["type"] = etype
        if current is None or "plugin" in config:
            plugin = config.get("plugin")
            if plugin not in installed_plugins(self.runtime):
                raise ScaiVaultError("invalid_config", "config.plugin is not an installed database plugin",
                                     details={"installed": installed_plugins(self.runtime)})
            fields["plugin"] = plugin
        if current is None or "connection_url" in config:
            fields["connection_url"] = check_connection_url(config.get("connection_url"))
        if current is None or "root_credentials_path" in config:
            from ..policy.paths import validate_path

            path = config.get("root_credentials_path")
            if not isinstance(path, str) or not path:
                raise ScaiVaultError("invalid_config", "config.root_credentials_path is required")
            validate_path(path)
            fields["root_credentials_path"] = path
        if current is None or "default_ttl" in body:
            fields["default_ttl"] = _duration(body.get("default_ttl"), "default_ttl", DEFAULT_TTL)
        if current is None or "max_ttl" in body:
            fields["max_ttl"] = _duration(body.get("max_ttl"), "max_ttl", DEFAULT_MAX_TTL)
        merged = {**(current or {}), **fields}
        if merged["default_ttl"] > merged["max_ttl"]:
            raise ScaiVaultError("invalid_duration", "default_ttl must not exceed max_ttl")
        return fields

    # ================================================================== engines: operations
    def create_engine(self, tenant_id: str, partner_id: str | None, body: dict, actor: str, audit: AuditFn,
                      may_read_root: Callable[[str], None]) -> dict:
        """Validate, check the caller may read the root secret, test the connection, store."""
        name = body.get("name")
        if not isinstance(name, str) or not ENGINE_NAME_RE.match(name):
            raise ScaiVaultError("invalid_config", "name must be 1-63 characters of a-z, 0-9, _ and -, starting alphanumeric")
        fields = self._engine_fields(body, None)
        may_read_root(fields["root_credentials_path"])
        username, password, _ = self._root_credentials(tenant_id, partner_id, fields["root_credentials_path"], audit)
        self._test_connection(self._build(fields["plugin"], fields["connection_url"], username, password), password)
        from pg8000.exceptions import DatabaseError

        try:
            with self.db.transaction() as s:
                row = s.one("""INSERT INTO dynamic_engines (id, tenant_id, partner_id, name, type, plugin, connection_url,
                                   root_credentials_path, default_ttl, max_ttl, health_status, health_checked_at,
                                   created_by, updated_by)
                               VALUES (:id, :t, :p, :name, :type, :plugin, :url, :root, :dttl, :mttl, 'healthy', now(),
                                       :actor, :actor) RETURNING *""",
                            id="eng_" + pyrandom.token_hex(8), t=tenant_id, p=partner_id, name=name, type=fields["type"],
                            plugin=fields["plugin"], url=fields["connection_url"], root=fields["root_credentials_path"],
                            dttl=fields["default_ttl"], mttl=fields["max_ttl"], actor=actor)
                record(s, audit("dynamic_config", extra={"operation": "engine_create", "engine": name,
                                                         "plugin": fields["plugin"]}))
        except DatabaseError as exc:
            if "dynamic_engines_name" in str(exc):
                raise ScaiVaultError("conflict", "an engine with this name exists", details={"engine": name}) from None
            raise
        self._set_health(row, True, None)
        return self.engine_view(row)

    def list_engines(self, tenant_id: str, visible: Callable[[str], bool]) -> dict:
        with self.db.session() as s:
            rows = s.query("SELECT * FROM dynamic_engines WHERE tenant_id = :t ORDER BY name", t=tenant_id)
        return {"engines": [self.engine_view(r) for r in rows if visible(r["name"])]}

    def update_engine(self, tenant_id: str, name: str, body: dict, actor: str, audit: AuditFn,
                      may_read_root: Callable[[str], None]) -> dict:
        if "name" in body and body["name"] != name:
            raise ScaiVaultError("invalid_config", "an engine cannot be renamed")
        current = self.engine(tenant_id, name)
        fields = self._engine_fields(body, current)
        merged = {**current, **fields}
        connection_changed = any(k in fields for k in ("plugin", "connection_url", "root_credentials_path"))
        if connection_changed:
            if "root_credentials_path" in fields:
                may_read_root(merged["root_credentials_path"])
            username, password, _ = self._root_credentials(tenant_id, current["partner_id"],
                                                           merged["root_credentials_path"], audit)
            self._test_connection(self._build(merged["plugin"], merged["connection_url"], username, password), password)
        with self.db.transaction() as s:
            self._engine_row(s, tenant_id, name, lock=True)
            row = s.one("""UPDATE dynamic_engines SET type = :type, plugin = :plugin, connection_url = :url,
                               root_credentials_path = :root, default_ttl = :dttl, max_ttl = :mttl,
                               health_status = CASE WHEN :changed THEN 'healthy' ELSE health_status END,
                               updated_at = now(), updated_by = :actor
                            WHERE id = :id RETURNING *""",
                        type=merged["type"], plugin=merged["plugin"], url=merged["connection_url"],
                        root=merged["root_credentials_path"], dttl=merged["default_ttl"], mttl=merged["max_ttl"],
                        changed=connection_changed, actor=actor, id=current["id"])
            record(s, audit("dynamic_config", extra={"operation": "engine_update", "engine": name,
                                                     "fields": sorted(fields)}))
        return self.engine_view(row)

    def delete_engine(self, tenant_id: str, name: str, force: bool, audit: AuditFn) -> dict:
        """Refused while leases are live, unless `force`: then every lease is revoked first."""
        row = self.engine(tenant_id, name)
        revoked: dict[str, int] = {}
        if force:
            revoked = self.revoke_where(row, None, audit)
        with self.db.transaction() as s:
            self._engine_row(s, tenant_id, name, lock=True)
            live = s.scalar("SELECT count(*) FROM dynamic_leases WHERE engine_id = :id AND state <> 'revoked'", id=row["id"])
            if live:
                raise ScaiVaultError("conflict", "the engine has live leases; revoke them or delete with ?force=true"
                                     if not force else "some leases could not be revoked; they are retried, try again later",
                                     details={"engine": name, "live_leases": live})
            s.execute("DELETE FROM dynamic_engines WHERE id = :id", id=row["id"])
            record(s, audit("dynamic_config", extra={"operation": "engine_delete", "engine": name, "force": force,
                                                     "revoked_leases": revoked.get("revoked", 0)}))
        from ..metrics import ENGINE_HEALTH, LEASES_ACTIVE

        for gauge in (LEASES_ACTIVE, ENGINE_HEALTH):
            try:
                gauge.remove(name)
            except KeyError:
                pass
        return {"name": name, "deleted": True, "revoked_leases": revoked.get("revoked", 0)}

    def health(self, tenant_id: str, name: str) -> dict:
        """Test the connection now; report it with the lease counts and failed revocations."""
        import time

        row = self.engine(tenant_id, name)
        started = time.perf_counter()
        status, error = "healthy", None
        try:
            _, conn, _ = self._connected(row, self.engine_audit(row))
            try:
                conn.execute(["SELECT 1"])
            finally:
                conn.close()
        except ScaiVaultError as exc:
            if exc.code == "audit_unavailable":
                raise
            status, error = "unreachable", exc.message
            self._set_health(row, False, exc.message)
        with self.db.session() as s:
            counts = {r["state"]: r["n"] for r in s.query(
                "SELECT state, count(*) AS n FROM dynamic_leases WHERE engine_id = :id AND state <> 'revoked' GROUP BY state",
                id=row["id"])}
            failures = s.query("""SELECT id, revoke_attempts, last_error, due_at AS next_attempt_at FROM dynamic_leases
                                   WHERE engine_id = :id AND state = 'revoke_failed' ORDER BY due_at LIMIT 20""", id=row["id"])
        return {"engine": name, "status": status, "error": error,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "leases": {"active": counts.get("active", 0), "revoke_failed": counts.get("revoke_failed", 0)},
                "failed_revocations": [{"lease_id": f["id"], "attempts": f["revoke_attempts"], "last_error": f["last_error"],
                                        "next_attempt_at": iso(f["next_attempt_at"])} for f in failures]}

    def rotate_root(self, tenant_id: str, name: str, actor: str, audit: AuditFn,
                    may_rotate_root: Callable[[str], None]) -> dict:
        """A new root password set in the database, then written as the next version of the root secret.

        One rotation per engine at a time (advisory lock): two interleaved rotations could leave the
        database with one password and the secret with the other.
        """
        row = self.engine(tenant_id, name)
        may_rotate_root(row["root_credentials_path"])
        with self.db.session() as lock:
            if not lock.scalar("SELECT pg_try_advisory_lock(hashtext(:k))", k="rotate-root:" + row["id"]):
                raise ScaiVaultError("rotation_in_progress", "a root rotation of this engine is running",
                                     details={"engine": name})
            try:
                version = self._rotate_root(row, audit)
            finally:
                lock.scalar("SELECT pg_advisory_unlock(hashtext(:k))", k="rotate-root:" + row["id"])
        return {"engine": name, "root_credentials_path": row["root_credentials_path"], "version": version,
                "rotated_at": iso(self.clock())}

    def _rotate_root(self, row: dict, audit: AuditFn) -> int:
        owner = SecretOwner(row["partner_id"] or "", row["tenant_id"])
        engine_audit = self.engine_audit(row)
        path = row["root_credentials_path"]
        current = self.runtime.secret_store.read(owner, path, None, engine_audit)
        username, old_password, version = self._credentials_from(current, path)
        engine = self._build(row["plugin"], row["connection_url"], username, old_password)
        fresh = new_password()
        self._run(engine, [engine.dialect.render(t, {"name": username, "password": fresh, "expiration": ""})
                           for t in engine.root_rotation_statements], old_password, row)
        try:
            self.runtime.secret_store.write(owner, path, WriteRequest(data={**current["data"], "password": fresh},
                                                                      cas=version),
                                            "dynamic:" + row["name"], engine_audit)
        except ScaiVaultError:
            # the database already has the new password: put the old one back, or it is lost
            reset_engine = self._build(row["plugin"], row["connection_url"], username, fresh)
            self._run(reset_engine, [engine.dialect.render(t, {"name": username, "password": old_password,
                                                                "expiration": ""})
                                     for t in engine.root_rotation_statements], fresh, row)
            raise
        with self.db.transaction() as s:
            s.execute("UPDATE dynamic_engines SET root_rotated_at = now() WHERE id = :id", id=row["id"])
            record(s, audit("rotate", secret_path=path,
                            extra={"engine": row["name"], "operation": "rotate_root", "version": version + 1}))
        return version + 1

    def _run(self, engine, statements: list[str], password: str, row: dict) -> None:
        try:
            conn = engine.connect()
        except EngineError as exc:
            self._set_health(row, False, _scrub(exc.reason, password))
            raise ScaiVaultError("service_unavailable", "the engine's database is unreachable: " + _scrub(exc.reason, password)) from None
        try:
            conn.execute(statements)
        except EngineError as exc:
            raise ScaiVaultError("service_unavailable", "the database refused: " + _scrub(exc.reason, password)) from None
        finally:
            conn.close()

    # ================================================================== roles
    @staticmethod
    def role_view(engine_name: str, row: dict) -> dict:
        return {"engine": engine_name, "name": row["name"], "creation_statements": row["creation_statements"],
                "revocation_statements": row["revocation_statements"], "renew_statements": row["renew_statements"],
                "default_ttl": row["default_ttl"], "max_ttl": row["max_ttl"],
                "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}

    def put_role(self, tenant_id: str, engine_name: str, role: str, body: dict, actor: str, audit: AuditFn) -> tuple[dict, bool]:
        check_role_name(role)
        unknown = set(body) - {"name", "creation_statements", "revocation_statements", "renew_statements",
                               "default_ttl", "max_ttl"}
        if unknown:
            raise ScaiVaultError("invalid_role", f"unknown field {sorted(unknown)[0]!r}")
        creation = check_statements("creation_statements", body.get("creation_statements"), required=True)
        revocation = check_statements("revocation_statements", body.get("revocation_statements"), required=False)
        renew = check_statements("renew_statements", body.get("renew_statements"), required=False)
        default_ttl = _duration(body.get("default_ttl"), "default_ttl")
        max_ttl = _duration(body.get("max_ttl"), "max_ttl")
        if default_ttl and max_ttl and default_ttl > max_ttl:
            raise ScaiVaultError("invalid_duration", "default_ttl must not exceed max_ttl")
        with self.db.transaction() as s:
            engine = self._engine_row(s, tenant_id, engine_name, lock=True)
            row = s.one("""INSERT INTO dynamic_roles (engine_id, name, creation_statements, revocation_statements,
                               renew_statements, default_ttl, max_ttl, created_by, updated_by)
                           VALUES (:e, :n, CAST(:c AS jsonb), CAST(:r AS jsonb), CAST(:rn AS jsonb), :d, :m, :a, :a)
                           ON CONFLICT (engine_id, name) DO UPDATE SET creation_statements = EXCLUDED.creation_statements,
                               revocation_statements = EXCLUDED.revocation_statements,
                               renew_statements = EXCLUDED.renew_statements, default_ttl = EXCLUDED.default_ttl,
                               max_ttl = EXCLUDED.max_ttl, updated_at = now(), updated_by = EXCLUDED.updated_by
                           RETURNING *, (xmax = 0) AS created""",
                        e=engine["id"], n=role, c=json.dumps(creation), r=json.dumps(revocation), rn=json.dumps(renew),
                        d=default_ttl, m=max_ttl, a=actor)
            record(s, audit("dynamic_config", secret_path=f"dynamic/{engine_name}/{role}",
                            extra={"operation": "role_write", "engine": engine_name, "role": role,
                                   "created": row["created"]}))
        return self.role_view(engine_name, row), row["created"]

    def _role_row(self, s: Session, engine_id: str, engine_name: str, role: str) -> dict:
        row = s.one("SELECT * FROM dynamic_roles WHERE engine_id = :e AND name = :n", e=engine_id, n=role)
        if row is None:
            raise ScaiVaultError("role_not_found", "no role with this name on the engine",
                                 details={"engine": engine_name, "role": role})
        return row

    def get_role(self, tenant_id: str, engine_name: str, role: str) -> dict:
        with self.db.session() as s:
            engine = self._engine_row(s, tenant_id, engine_name)
            return self.role_view(engine_name, self._role_row(s, engine["id"], engine_name, role))

    def list_roles(self, tenant_id: str, engine_name: str, visible: Callable[[str], bool]) -> dict:
        with self.db.session() as s:
            engine = self._engine_row(s, tenant_id, engine_name)
            rows = s.query("SELECT * FROM dynamic_roles WHERE engine_id = :e ORDER BY name", e=engine["id"])
        return {"roles": [self.role_view(engine_name, r) for r in rows if visible(r["name"])]}

    def delete_role(self, tenant_id: str, engine_name: str, role: str, audit: AuditFn) -> dict:
        with self.db.transaction() as s:
            engine = self._engine_row(s, tenant_id, engine_name, lock=True)
            self._role_row(s, engine["id"], engine_name, role)
            live = s.scalar("""SELECT count(*) FROM dynamic_leases WHERE engine_id = :e AND role_name = :n
                                  AND state <> 'revoked'""", e=engine["id"], n=role)
            if live:
                raise ScaiVaultError("conflict", "the role has live leases; revoke them first",
                                     details={"engine": engine_name, "role": role, "live_leases": live})
            s.execute("DELETE FROM dynamic_roles WHERE engine_id = :e AND name = :n", e=engine["id"], n=role)
            record(s, audit("dynamic_config", secret_path=f"dynamic/{engine_name}/{role}",
                            extra={"operation": "role_delete", "engine": engine_name, "role": role}))
        return {"engine": engine_name, "name": role, "deleted": True}

    # ================================================================== credentials
    def generate(self, tenant_id: str, engine_name: str, role: str, ttl: Any, identity_id: str, owner: str,
                 audit: AuditFn) -> dict:
        """A new database user: lease row first (durable, audited), then the creation statements."""
        check_role_name(role)
        requested = _duration(ttl, "ttl")
        with self.db.session() as s:
            engine_row = self._engine_row(s, tenant_id, engine_name)
            role_row = self._role_row(s, engine_row["id"], engine_name, role)
        max_ttl = min(engine_row["max_ttl"], role_row["max_ttl"] or engine_row["max_ttl"])
        lease_ttl = min(requested or role_row["default_ttl"] or engine_row["default_ttl"], max_ttl)
        now = self.clock()
        expires_at = now + timedelta(seconds=lease_ttl)
        username, password = new_username(role), new_password()
        lease_id = f"{engine_name}/{role}/{pyrandom.token_hex(10)}"
        engine, conn, root_password = self._connected(engine_row, self.engine_audit(engine_row))
        try:
            statements = [engine.dialect.render(t, {"name": username, "password": password,
                                                    "expiration": expires_at.strftime(engine.dialect.expiration_format)})
                          for t in role_row["creation_statements"]]
            with self.db.transaction() as s:
                s.execute("""INSERT INTO dynamic_leases (id, tenant_id, partner_id, engine_id, engine_name, role_name,
                                 identity_id, owner_principal, username, issued_at, expires_at, max_expires_at, due_at)
                             VALUES (:id, :t, :p, :e, :en, :r, :who, :owner, :u, :now, :exp, :maxexp, :exp)""",
                          id=lease_id, t=tenant_id, p=engine_row["partner_id"], e=engine_row["id"], en=engine_name,
                          r=role, who=identity_id, owner=owner, u=username, now=now, exp=expires_at,
                          maxexp=now + timedelta(seconds=max_ttl))
                record(s, entry := audit("dynamic_generate", secret_path=f"dynamic/{engine_name}/{role}",
                                         extra={"lease_id": lease_id, "username": username, "ttl": lease_ttl}))
                lease_changed(s, entry)
            try:
                conn.execute(statements)
            except EngineError as exc:
                reason = _scrub(_scrub(exc.reason, root_password), password)
                # part of a non-transactional creation may exist: revoke it like any lease (retried if need be)
                self._revoke_rows(engine_row, [self._lease_row(lease_id)], "creation_failed", conn=conn, engine=engine)
                raise ScaiVaultError("service_unavailable", f"the database refused the creation statements: {reason}",
                                     details={"engine": engine_name, "role": role}) from None
        finally:
            conn.close()
        _count_generated(engine_name, role)
        return {"lease_id": lease_id, "lease_duration": lease_ttl, "renewable": True,
                "expires_at": iso(expires_at), "data": {"username": username, "password": password}}

    # ================================================================== leases
    def _lease_row(self, lease_id: str, tenant_id: str | None = None) -> dict:
        row = self.db.one("SELECT * FROM dynamic_leases WHERE id = :id" + (" AND tenant_id = :t" if tenant_id else ""),
                          id=lease_id, **({"t": tenant_id} if tenant_id else {}))
        if row is None:
            raise ScaiVaultError("lease_not_found", "no lease with this id", details={"lease_id": lease_id[:256]})
        return row

    def lease(self, tenant_id: str, lease_id: str) -> tuple[dict, str]:
        """(the lease's view, its owner's principal)."""
        row = self._lease_row(lease_id, tenant_id)
        return lease_view(row, self.clock()), row["owner_principal"]

    def list_leases(self, tenant_id: str, *, engine: str | None, role: str | None, identity: str | None,
                    state: str | None, limit: Any, cursor: str | None,
                    visible_roles: Callable[[str, str], bool] | None, caller: str) -> dict:
        size = page_limit(limit, 100, 1000)
        after = decode_cursor(cursor) or ""
        where = ["tenant_id = :t", "id > :after"]
        params: dict[str, Any] = {"t": tenant_id, "after": after, "lim": size + 1}
        for column, value in (("engine_name", engine), ("role_name", role), ("identity_id", identity)):
            if value:
                where.append(f"{column} = :{column}")
                params[column] = value
        if state:
            if state not in ("active", "revoke_failed", "revoked", "live"):
                raise ScaiVaultError("invalid_request", "state must be active, revoke_failed, revoked or live")
            where.append("state <> 'revoked'" if state == "live" else "state = :state")
            params["state"] = state
        if visible_roles is not None:
            # a caller sees its own leases and those of roles it may list
            with self.db.session() as s:
                pairs = s.query("""SELECT e.name AS engine, r.name AS role FROM dynamic_roles r
                                     JOIN dynamic_engines e ON e.id = r.engine_id WHERE e.tenant_id = :t""", t=tenant_id)
            allowed = [f"{p['engine']}/{p['role']}" for p in pairs if visible_roles(p["engine"], p["role"])]
            where.append("(owner_principal = :caller OR (engine_name || '/' || role_name) = ANY(CAST(:allowed AS text[])))")
            params.update(caller=caller, allowed=allowed)
        rows = self.db.query(f"SELECT * FROM dynamic_leases WHERE {' AND '.join(where)} ORDER BY id LIMIT :lim", **params)
        more = len(rows) > size
        rows = rows[:size]
        now = self.clock()
        return {"leases": [lease_view(r, now) for r in rows],
                "cursor": encode_cursor(rows[-1]["id"]) if more else None, "has_more": more}

    def renew(self, tenant_id: str, lease_id: str, increment: Any, audit: AuditFn) -> dict:
        """Extend a live lease by `increment` (default: the role's TTL) from now, capped by its max TTL."""
        requested = _duration(increment, "increment")
        lease = self._lease_row(lease_id, tenant_id)
        now = self.clock()
        if lease["state"] != "active" or lease["expires_at"] <= now:
            raise ScaiVaultError("lease_expired", "the lease is expired or revoked and cannot be renewed",
                                 details={"lease_id": lease_id})
        with self.db.session() as s:
            engine_row = s.one("SELECT * FROM dynamic_engines WHERE id = :id", id=lease["engine_id"])
            role_row = s.one("SELECT * FROM dynamic_roles WHERE engine_id = :e AND name = :n", e=lease["engine_id"],
                             n=lease["role_name"])
        if role_row is None:
            raise ScaiVaultError("role_not_found", "the lease's role no longer exists")
        step = requested or role_row["default_ttl"] or engine_row["default_ttl"]
        expires_at = min(now + timedelta(seconds=step), lease["max_expires_at"])
        engine = self._build_for(engine_row)
        templates = role_row["renew_statements"] or engine.default_renew_statements
        if templates:
            statements = [engine.dialect.render(t, {"name": lease["username"], "password": "",
                                                    "expiration": expires_at.strftime(engine.dialect.expiration_format)})
                          for t in templates]
            _, conn, root_password = self._connected(engine_row, self.engine_audit(engine_row))
            try:
                conn.execute(statements)
            except EngineError as exc:
                raise ScaiVaultError("service_unavailable", "the database refused the renew statements: "
                                     + _scrub(exc.reason, root_password)) from None
            finally:
                conn.close()
        with self.db.transaction() as s:
            row = s.one("""UPDATE dynamic_leases SET expires_at = :exp, due_at = :exp, renewed_at = :now
                            WHERE id = :id AND state = 'active' RETURNING *""", exp=expires_at, now=now, id=lease_id)
            if row is None:
                raise ScaiVaultError("lease_expired", "the lease was revoked meanwhile", details={"lease_id": lease_id})
            record(s, entry := audit("dynamic_renew", secret_path=f"dynamic/{lease['engine_name']}/{lease['role_name']}",
                                     extra={"lease_id": lease_id, "expires_at": iso(expires_at),
                                            "capped": expires_at == lease["max_expires_at"]}))
            lease_changed(s, entry)
        return lease_view(row, now)

    def _build_for(self, engine_row: dict):
        """An engine object for dialect and defaults (no connection, no credentials)."""
        return self._build(engine_row["plugin"], engine_row["connection_url"], "x", "x")

    def revoke(self, tenant_id: str, lease_id: str, audit: AuditFn) -> dict:
        lease = self._lease_row(lease_id, tenant_id)
        if lease["state"] == "revoked":
            return lease_view(lease, self.clock())
        engine_row = self.db.one("SELECT * FROM dynamic_engines WHERE id = :id", id=lease["engine_id"])
        self._revoke_rows(engine_row, [lease], "revoked", request_audit=audit)
        return lease_view(self._lease_row(lease_id), self.clock())

    def revoke_prefix(self, tenant_id: str, prefix: str, audit: AuditFn) -> dict:
        """Revoke every live lease whose id starts with `prefix` (an engine, engine/role, ...)."""
        if not isinstance(prefix, str) or not prefix or len(prefix) > 256:
            raise ScaiVaultError("invalid_request", "prefix must be a non-empty lease id prefix")
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.db.query("""SELECT * FROM dynamic_leases WHERE tenant_id = :t AND id LIKE :p AND state <> 'revoked'
                                 ORDER BY engine_id, id""", t=tenant_id, p=escaped + "%")
        totals = {"matched": len(rows), "revoked": 0, "failed": 0}
        by_engine: dict[str, list[dict]] = {}
        for row in rows:
            by_engine.setdefault(row["engine_id"], []).append(row)
        for engine_id, leases in by_engine.items():
            engine_row = self.db.one("SELECT * FROM dynamic_engines WHERE id = :id", id=engine_id)
            result = self._revoke_rows(engine_row, leases, "revoked_by_prefix", request_audit=audit)
            totals["revoked"] += result["revoked"]
            totals["failed"] += result["failed"]
        return {"prefix": prefix, **totals}

    def revoke_where(self, engine_row: dict, role: str | None, audit: AuditFn) -> dict:
        rows = self.db.query("SELECT * FROM dynamic_leases WHERE engine_id = :e AND state <> 'revoked'"
                             + (" AND role_name = :r" if role else ""), e=engine_row["id"], **({"r": role} if role else {}))
        return self._revoke_rows(engine_row, rows, "engine_deleted", request_audit=audit) if rows else {"revoked": 0, "failed": 0}

    def _revoke_rows(self, engine_row: dict, leases: list[dict], reason: str, *, request_audit: AuditFn | None = None,
                     conn=None, engine=None, now: datetime | None = None) -> dict[str, int]:
        """Run each lease's revocation statements; mark it revoked, or failed with its next retry."""
        result = {"revoked": 0, "failed": 0}
        if not leases:
            return result
        now = now or self.clock()
        roles: dict[str, dict | None] = {}
        own_conn = conn is None
        root_password = ""
        connect_error: str | None = None
        if own_conn:
            try:
                engine, conn, root_password = self._connected(engine_row, self.engine_audit(engine_row))
            except ScaiVaultError as exc:
                if exc.code == "audit_unavailable":
                    raise
                connect_error = exc.message
        try:
            for lease in leases:
                error = connect_error
                if error is None:
                    if lease["role_name"] not in roles:
                        roles[lease["role_name"]] = self.db.one(
                            "SELECT * FROM dynamic_roles WHERE engine_id = :e AND name = :n",
                            e=engine_row["id"], n=lease["role_name"])
                    role_row = roles[lease["role_name"]]
                    templates = (role_row and role_row["revocation_statements"]) or engine.default_revocation_statements
                    try:
                        conn.execute([engine.dialect.render(t, {"name": lease["username"], "password": "",
                                                                "expiration": ""}) for t in templates])
                    except EngineError as exc:
                        error = _scrub(exc.reason, root_password)
                self._finish_revocation(engine_row, lease, error, reason, now, request_audit)
                result["failed" if error else "revoked"] += 1
        finally:
            if own_conn and conn is not None:
                conn.close()
        return result

    def _finish_revocation(self, engine_row: dict, lease: dict, error: str | None, reason: str, now: datetime,
                           request_audit: AuditFn | None) -> None:
        audit = request_audit or _sweeper_audit(lease)
        extra = {"lease_id": lease["id"], "username": lease["username"], "reason": reason}
        with self.db.transaction() as s:
            if error is None:
                s.execute("""UPDATE dynamic_leases SET state = 'revoked', due_at = NULL, revoked_at = :now,
                                 revoke_reason = :reason, last_error = NULL WHERE id = :id AND state <> 'revoked'""",
                          now=now, reason=reason, id=lease["id"])
            else:
                attempts = lease["revoke_attempts"] + 1
                s.execute("""UPDATE dynamic_leases SET state = 'revoke_failed', revoke_attempts = :n, last_error = :err,
                                 due_at = :next, revoke_reason = :reason WHERE id = :id AND state <> 'revoked'""",
                          n=attempts, err=error[:500], next=now + timedelta(seconds=backoff_seconds(attempts)),
                          reason=reason, id=lease["id"])
                extra.update(error=error[:500], attempts=attempts)
                log.warning("lease revocation failed; will retry",
                            extra={"lease_id": lease["id"], "engine": engine_row["name"], "attempts": attempts})
            record(s, entry := audit("dynamic_revoke", secret_path=f"dynamic/{lease['engine_name']}/{lease['role_name']}",
                                     success=error is None, extra=extra))
            lease_changed(s, entry)

    # ================================================================== sweeper
    def sweep(self, now: datetime | None = None, batch: int = SWEEP_BATCH) -> dict:
        """Revoke expired leases and retry failed revocations; one runner across instances.

        Touches only rows with due_at <= now (partial index), in batches, oldest first; then
        deletes revoked rows older than LEASE_HISTORY_RETENTION (a bounded batch per sweep).
        """
        now = now or self.clock()
        totals = {"revoked": 0, "failed": 0, "skipped": False}
        with self.db.session() as lock_session:
            if not lock_session.scalar("SELECT pg_try_advisory_lock(:k)", k=SWEEP_ADVISORY_LOCK):
                totals["skipped"] = True
                return totals
            try:
                seen: set[str] = set()
                while True:
                    rows = self.db.query("""SELECT * FROM dynamic_leases WHERE due_at IS NOT NULL AND due_at <= :now
                                             ORDER BY due_at LIMIT :lim""", now=now, lim=batch)
                    rows = [r for r in rows if r["id"] not in seen]
                    if not rows:
                        break
                    seen.update(r["id"] for r in rows)
                    by_engine: dict[str, list[dict]] = {}
                    for row in rows:
                        by_engine.setdefault(row["engine_id"], []).append(row)
                    for engine_id, leases in by_engine.items():
                        engine_row = self.db.one("SELECT * FROM dynamic_engines WHERE id = :id", id=engine_id)
                        if engine_row is None:
                            continue
                        result = self._revoke_rows(engine_row, leases, "expired" if leases[0]["state"] == "active"
                                                   else "retry", now=now)
                        totals["revoked"] += result["revoked"]
                        totals["failed"] += result["failed"]
                totals["purged"] = self.db.execute(
                    """DELETE FROM dynamic_leases WHERE id IN (
                           SELECT id FROM dynamic_leases WHERE state = 'revoked' AND revoked_at < :cutoff
                            ORDER BY revoked_at LIMIT :lim)""",
                    cutoff=now - timedelta(seconds=self.runtime.settings.lease_history_retention), lim=PURGE_BATCH)
            finally:
                lock_session.scalar("SELECT pg_advisory_unlock(:k)", k=SWEEP_ADVISORY_LOCK)
        return totals

    def refresh_gauges(self) -> None:
        """The lease and engine gauges from PostgreSQL (each sweeper tick), so every worker reports
        what any instance last saw: one indexed count, not one per request."""
        from ..metrics import ENGINE_HEALTH, LEASES_ACTIVE

        for row in self.db.query("""SELECT e.name, count(l.id) AS n,
                                           bool_and(e.health_status <> 'unreachable') AS healthy,
                                           bool_and(e.health_status = 'unknown') AS unknown
                                      FROM dynamic_engines e
                                      LEFT JOIN dynamic_leases l ON l.engine_id = e.id AND l.state <> 'revoked'
                                     GROUP BY e.name"""):
            LEASES_ACTIVE.labels(engine=row["name"]).set(row["n"])
            if not row["unknown"]:
                ENGINE_HEALTH.labels(engine=row["name"]).set(1 if row["healthy"] else 0)


# ---------------------------------------------------------------------- module helpers
def check_role_name(role: str) -> None:
    if not isinstance(role, str) or not ROLE_NAME_RE.match(role):
        raise ScaiVaultError("invalid_role", "a role name is 1-64 characters of letters, digits, '.', '_' and '-'")


def lease_view(row: dict, now: datetime) -> dict:
    live = row["state"] == "active"
    return {"lease_id": row["id"], "engine": row["engine_name"], "role": row["role_name"],
            "identity_id": row["identity_id"], "username": row["username"], "state": row["state"],
            "renewable": live and row["renewable"] and row["expires_at"] < row["max_expires_at"],
            "issued_at": iso(row["issued_at"]), "expires_at": iso(row["expires_at"]),
            "max_expires_at": iso(row["max_expires_at"]), "renewed_at": iso(row["renewed_at"]),
            "ttl": max(0, int((row["expires_at"] - now).total_seconds())) if live else 0,
            "revoked_at": iso(row["revoked_at"]), "revoke_attempts": row["revoke_attempts"],
            "last_error": row["last_error"],
            "next_attempt_at": iso(row["due_at"]) if row["state"] == "revoke_failed" else None}


def _scrub(text: str, password: str) -> str:
    """A driver's message with the password removed, should a driver ever echo it."""
    text = str(text)
    if password and len(password) >= 3:
        text = text.replace(password, "***").replace(quote(password, safe=""), "***")
    return text[:500]


def _sweeper_audit(lease: dict) -> AuditFn:
    def build(action: str, *, secret_path: str | None = None, success: bool = True, extra: dict | None = None) -> AuditEntry:
        return AuditEntry(action=action, tenant_id=lease["tenant_id"], partner_id=lease["partner_id"],
                          identity_type="system", identity_id=SYSTEM_SWEEPER, secret_path=secret_path,
                          success=success, extra_data=dict(extra or {}))
    return build


def _count_generated(engine: str, role: str) -> None:
    from ..metrics import LEASES_GENERATED

    LEASES_GENERATED.labels(engine=engine, role=role).inc()
