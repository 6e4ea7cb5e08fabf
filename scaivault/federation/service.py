"""Federation backends of a tenant: configuration, routing of reads, sync, conflicts, status.

Backend rows hold configuration only. The backend's own credentials stay in the ScaiVault
secret the config names (`auth_config_path` / `credentials_path`) and are read from there
each time a client is built, so a rotation of that secret is picked up without a PATCH.
Sync keeps, per synced path, the backend's version id and the local version it matched; a
path changed on both sides since then, or present locally with other data before the first
sync, is a conflict: recorded, listed, and left alone until one side changes again.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ..audit import AuditEntry, record
from ..audit.writer import record_now
from ..config import parse_duration
from ..errors import ScaiVaultError, ValidationFailed
from ..pagination import timestamp
from ..snapshot import PeriodicSnapshot
from ..services.secrets import SecretOwner, WriteRequest
from . import BACKEND_TYPES, FederationBackend, FederationUnavailable, RemoteNotFound, RemoteSecret
from .mapping import PathMapping

log = logging.getLogger("scaivault.federation")

MODES = ("proxy", "sync")
DIRECTIONS = ("import", "export")
WRITE_POLICIES = ("refuse", "write_through")
DELETE_POLICIES = ("keep", "propagate")
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 30.0
MIN_SYNC_INTERVAL = 60
ROUTES_TTL = 5.0                      # seconds a process trusts its snapshot of every tenant's mappings
SYNC_LOCK = 0x5343_4656_4644          # pg advisory lock namespace of sync runs ("SCFVFD")
MAX_SYNC_PATHS = 10_000               # per run; the rest waits for the next run

CREDENTIAL_FIELDS = ("auth_config_path", "credentials_path")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def system_audit(owner: SecretOwner, backend_id: str) -> Callable[..., AuditEntry]:
    """An audit entry builder for work the service does on its own (sync runs)."""

    def build(action: str, *, secret_path: str | None = None, success: bool = True,
              extra: dict[str, Any] | None = None) -> AuditEntry:
        return AuditEntry(action=action, tenant_id=owner.tenant_id, partner_id=owner.partner_id,
                          identity_type="system", identity_id=f"system:federation:{backend_id}",
                          secret_path=secret_path, success=success,
                          extra_data={"backend_id": backend_id, **(extra or {})})

    return build


@dataclass(frozen=True)
class Route:
    """Where a ScaiVault path is served from."""

    backend_id: str
    backend_name: str
    backend_type: str
    mode: str
    remote_path: str
    write_policy: str
    direction: str


class FederationService:
    def __init__(self, runtime):
        self.runtime = runtime
        self.db = runtime.db
        self._mappings = PeriodicSnapshot("federation mappings", self._load_mappings, {}, ROUTES_TTL)

    # ------------------------------------------------------------------ plugins and credentials
    def _factory(self, backend_type: str):
        from ..plugins import registrations

        regs = registrations("scaivault_federation_backends", self.runtime.plugins)
        if backend_type not in regs:
            raise ScaiVaultError("invalid_config", f"no federation backend plugin for type {backend_type!r}; "
                                                   f"installed: {', '.join(sorted(regs)) or 'none'}")
        return regs[backend_type].factory

    def _credentials(self, owner: SecretOwner, row: dict, audit) -> dict:
        path = next((row["config"].get(f) for f in CREDENTIAL_FIELDS if row["config"].get(f)), None)
        if not path:
            return {}
        secret = self.runtime.secret_store.read(owner, path, None, audit)
        return secret["data"]

    def client(self, owner: SecretOwner, row: dict, audit) -> FederationBackend:
        timeout = float(row["config"].get("timeout_seconds") or DEFAULT_TIMEOUT)
        return self._factory(row["type"])(row["config"], self._credentials(owner, row, audit), timeout)

    # ------------------------------------------------------------------ validation
    def _validated(self, body: dict, existing: dict | None) -> dict:
        merged = {**(existing or {}), **{k: v for k, v in body.items() if v is not None}}
        fields: dict[str, str] = {}
        name = merged.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128 or not name.replace("-", "").replace("_", "").isalnum():
            fields["name"] = "1-128 letters, digits, '-' or '_'"
        if merged.get("type") not in BACKEND_TYPES:
            fields["type"] = f"one of {', '.join(BACKEND_TYPES)}"
        if merged.get("mode") not in MODES:
            fields["mode"] = "proxy or sync"
        config = merged.get("config")
        if not isinstance(config, dict) or len(json.dumps(config)) > 8192:
            fields["config"] = "an object (at most 8 KiB)"
            config = {}
        for key in ("direction", "write_policy", "delete_policy"):
            allowed = {"direction": DIRECTIONS, "write_policy": WRITE_POLICIES, "delete_policy": DELETE_POLICIES}[key]
            if config.get(key) is not None and config[key] not in allowed:
                fields[f"config.{key}"] = f"one of {', '.join(allowed)}"
        if config.get("direction") == "export" and merged.get("mode") != "sync":
            fields["config.direction"] = "export needs mode sync (a proxy only reads)"
        timeout = config.get("timeout_seconds")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not 0.5 <= timeout <= MAX_TIMEOUT):
            fields["config.timeout_seconds"] = f"a number of seconds between 0.5 and {MAX_TIMEOUT:g}"
        for key in CREDENTIAL_FIELDS:
            if config.get(key) is not None and not isinstance(config[key], str):
                fields[f"config.{key}"] = "a ScaiVault secret path"
        interval = None
        if merged.get("mode") == "sync":
            raw = merged.get("sync_interval")
            if isinstance(raw, int) and not isinstance(raw, bool):
                interval = raw
            else:
                try:
                    interval = parse_duration(raw) if isinstance(raw, str) else None
                except ValueError:
                    interval = None
            if interval is None or interval < MIN_SYNC_INTERVAL:
                fields["sync_interval"] = "required in sync mode: a duration of at least 1m (e.g. 15m)"
        if fields:
            raise ValidationFailed(fields)
        mapping = PathMapping.parse(merged.get("path_mapping"))
        return {"name": name, "type": merged["type"], "mode": merged["mode"], "config": config,
                "path_mapping": mapping, "sync_interval": interval}

    def _check_overlap(self, owner: SecretOwner, mapping: PathMapping, exclude_id: str | None) -> None:
        for other in self._rows(owner):
            if other["id"] == exclude_id:
                continue
            clash = mapping.overlaps(PathMapping.parse(other["path_mapping"]))
            if clash:
                raise ScaiVaultError("conflict", f"{clash} is already mapped by backend {other['name']}",
                                     details={"backend_id": other["id"]})

    # ------------------------------------------------------------------ CRUD
    def _rows(self, owner: SecretOwner) -> list[dict]:
        return self.db.query("SELECT * FROM federation_backends WHERE tenant_id = :t ORDER BY name",
                             t=owner.tenant_id)

    def _row(self, owner: SecretOwner, backend_id: str) -> dict:
        row = None
        if isinstance(backend_id, str) and len(backend_id) <= 64:
            row = self.db.one("SELECT * FROM federation_backends WHERE tenant_id = :t AND id = :id",
                              t=owner.tenant_id, id=backend_id)
        if row is None:
            raise ScaiVaultError("federation_backend_not_found", "no federation backend with this id",
                                 details={"backend_id": backend_id if isinstance(backend_id, str) else None})
        return row

    def create(self, owner: SecretOwner, body: dict, actor: str, audit) -> dict:
        spec = self._validated(body, None)
        self._check_overlap(owner, spec["path_mapping"], None)
        row = {"id": "fed_" + secrets.token_hex(8), **spec, "path_mapping": spec["path_mapping"].as_dict()}
        self._test_connection(owner, row, audit)
        with self.db.transaction() as s:
            if s.one("SELECT 1 FROM federation_backends WHERE tenant_id = :t AND name = :n", t=owner.tenant_id,
                     n=spec["name"]):
                raise ScaiVaultError("conflict", "a federation backend with this name exists",
                                     details={"name": spec["name"]})
            created = s.one("""INSERT INTO federation_backends (id, tenant_id, partner_id, name, type, mode, config,
                                   path_mapping, sync_interval, created_by, status, next_sync_at)
                               VALUES (:id, :t, :p, :name, :type, :mode, CAST(:config AS jsonb),
                                       CAST(:mapping AS jsonb), :interval, :actor, 'healthy',
                                       CASE WHEN CAST(:mode AS text) = 'sync' THEN now() END)
                               RETURNING *""",
                            id=row["id"], t=owner.tenant_id, p=owner.partner_id, name=spec["name"], type=spec["type"],
                            mode=spec["mode"], config=json.dumps(spec["config"]), mapping=json.dumps(row["path_mapping"]),
                            interval=spec["sync_interval"], actor=actor)
            record(s, audit("federation_backend_create", extra={"backend_id": row["id"], "type": spec["type"],
                                                                "mode": spec["mode"]}))
        self.invalidate()
        return self.view(created)

    def _test_connection(self, owner: SecretOwner, row: dict, audit) -> None:
        try:
            client = self.client(owner, row, audit)
        except ScaiVaultError as exc:
            if exc.code in ("secret_not_found", "secret_expired", "version_destroyed"):
                raise ScaiVaultError("invalid_config", "the credentials secret named in config cannot be read "
                                                       f"({exc.code})") from None
            raise
        try:
            client.check()
        except FederationUnavailable as exc:
            raise ScaiVaultError("invalid_config", f"test connection failed: {exc.message}") from None
        finally:
            client.close()

    def update(self, owner: SecretOwner, backend_id: str, body: dict, actor: str, audit) -> dict:
        row = self._row(owner, backend_id)
        current = {"name": row["name"], "type": row["type"], "mode": row["mode"], "config": row["config"],
                   "path_mapping": row["path_mapping"], "sync_interval": row["sync_interval"]}
        if "type" in body and body["type"] is not None and body["type"] != row["type"]:
            raise ValidationFailed({"type": "cannot change; create another backend"})
        spec = self._validated(body, current)
        self._check_overlap(owner, spec["path_mapping"], backend_id)
        candidate = {**row, **spec, "path_mapping": spec["path_mapping"].as_dict()}
        if body.get("config") is not None:
            self._test_connection(owner, candidate, audit)
        with self.db.transaction() as s:
            updated = s.one("""UPDATE federation_backends SET name = :name, mode = :mode, config = CAST(:config AS jsonb),
                                      path_mapping = CAST(:mapping AS jsonb), sync_interval = :interval,
                                      updated_at = now(),
                                      next_sync_at = CASE WHEN CAST(:mode AS text) = 'sync' THEN COALESCE(next_sync_at, now()) END
                                WHERE id = :id AND tenant_id = :t RETURNING *""",
                            id=backend_id, t=owner.tenant_id, name=spec["name"], mode=spec["mode"],
                            config=json.dumps(spec["config"]), mapping=json.dumps(candidate["path_mapping"]),
                            interval=spec["sync_interval"])
            record(s, audit("federation_backend_update", extra={"backend_id": backend_id, "mode": spec["mode"],
                                                                "fields": sorted(k for k, v in body.items() if v is not None)}))
        self.invalidate()
        return self.view(updated)

    def delete(self, owner: SecretOwner, backend_id: str, audit) -> dict:
        row = self._row(owner, backend_id)
        with self.db.transaction() as s:
            s.execute("DELETE FROM federation_backends WHERE id = :id AND tenant_id = :t", id=backend_id,
                      t=owner.tenant_id)
            record(s, audit("federation_backend_delete", extra={"backend_id": backend_id}))
        self.invalidate()
        return {"id": row["id"], "deleted": True}

    def get(self, owner: SecretOwner, backend_id: str) -> dict:
        return self.view(self._row(owner, backend_id))

    def list(self, owner: SecretOwner) -> list[dict]:
        return [self.view(r) for r in self._rows(owner)]

    @staticmethod
    def view(row: dict) -> dict:
        return {"id": row["id"], "name": row["name"], "type": row["type"], "mode": row["mode"],
                "config": row["config"], "path_mapping": row["path_mapping"],
                "sync_interval": f"{row['sync_interval']}s" if row["sync_interval"] else None,
                "status": row["status"], "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
                "created_by": row["created_by"]}

    def status(self, owner: SecretOwner, backend_id: str, audit) -> dict:
        row = self._row(owner, backend_id)
        started = time.perf_counter()
        try:
            self._test_connection(owner, row, audit)
            reachable, error = True, None
        except ScaiVaultError as exc:
            reachable, error = False, exc.message
        latency_ms = int((time.perf_counter() - started) * 1000)
        counts = self.db.one("""SELECT count(*) AS synced,
                                       (SELECT count(*) FROM federation_conflicts c
                                         WHERE c.backend_id = :id AND c.resolved_at IS NULL) AS conflicts
                                  FROM federation_sync_state WHERE backend_id = :id""", id=backend_id)
        status = "healthy" if reachable and not row["last_error"] else ("degraded" if reachable else "unreachable")
        return {"id": row["id"], "name": row["name"], "type": row["type"], "mode": row["mode"], "status": status,
                "reachable": reachable, "error": error, "check_latency_ms": latency_ms,
                "last_sync": timestamp(row["last_sync_at"]), "last_sync_duration_ms": row["last_sync_duration_ms"],
                "last_sync_result": row["last_sync_result"], "last_error": row["last_error"],
                "next_sync": timestamp(row["next_sync_at"]), "synced_paths": counts["synced"],
                "open_conflicts": counts["conflicts"]}

    def conflicts(self, owner: SecretOwner, backend_id: str) -> list[dict]:
        self._row(owner, backend_id)
        rows = self.db.query("""SELECT * FROM federation_conflicts WHERE backend_id = :id AND resolved_at IS NULL
                                ORDER BY path""", id=backend_id)
        return [{"id": r["id"], "path": r["path"], "remote_path": r["remote_path"], "reason": r["reason"],
                 "local_version": r["local_version"], "remote_version": r["remote_version"],
                 "detected_at": timestamp(r["detected_at"])} for r in rows]

    # ------------------------------------------------------------------ read routing
    def _load_mappings(self) -> dict[str, list[tuple[PathMapping, dict]]]:
        mappings: dict[str, list[tuple[PathMapping, dict]]] = {}
        for row in self.db.query("SELECT tenant_id, id, name, type, mode, config, path_mapping FROM federation_backends"):
            mappings.setdefault(row["tenant_id"], []).append((PathMapping.parse(row["path_mapping"]), row))
        return mappings

    def invalidate(self) -> None:
        self._mappings.expire()

    def warm(self) -> None:
        """Load the mappings now (a new worker warming up), so its first read does not."""
        self._mappings.get()

    def route(self, owner: SecretOwner, path: str) -> Route | None:
        """The backend serving `path` live (proxy) or as a synced copy, or None (a plain secret).

        Every tenant's mappings are one snapshot per process, refreshed every ROUTES_TTL seconds,
        so a read costs a dictionary lookup and no query.
        """
        if owner.tenant_id is None:
            return None
        for mapping, row in self._mappings.get().get(owner.tenant_id, ()):
            remote = mapping.to_remote(path)
            if remote is not None:
                return Route(row["id"], row["name"], row["type"], row["mode"], remote,
                             row["config"].get("write_policy") or "refuse",
                             row["config"].get("direction") or "import")
        return None

    def proxy_read(self, owner: SecretOwner, path: str, route: Route, audit) -> dict:
        """One live read from the backend; nothing is stored. Audited like any read."""
        row = self._row(owner, route.backend_id)
        extra = {"federation": {"backend_id": route.backend_id, "backend": route.backend_name, "mode": "proxy"}}
        try:
            client = self.client(owner, row, audit)
            try:
                remote = client.read(route.remote_path)
            finally:
                client.close()
        except RemoteNotFound:
            record_now(self.runtime, audit("read", secret_path=path, success=False,
                                           extra={**extra, "error": "secret_not_found"}))
            raise ScaiVaultError("secret_not_found", "no secret at this path in the federated backend",
                                 details={"path": path, "backend_id": route.backend_id}) from None
        except FederationUnavailable as exc:
            record_now(self.runtime, audit("read", secret_path=path, success=False,
                                           extra={**extra, "error": exc.code}))
            raise FederationUnavailable(f"backend {route.backend_name}: {exc.message}",
                                        details={"path": path, "backend_id": route.backend_id}) from None
        record_now(self.runtime, audit("read", secret_path=path, extra={**extra, "remote_version": remote.version}))
        return self.remote_view(path, route, remote)

    @staticmethod
    def remote_view(path: str, route: Route, remote: RemoteSecret) -> dict:
        version = int(remote.version) if remote.version.isdigit() else 1
        return {"path": path, "secret_type": "kv", "version": version, "current_version": version,
                "data": remote.data, "metadata": {}, "created_at": None, "updated_at": None, "expires_at": None,
                "federation": {"backend_id": route.backend_id, "backend": route.backend_name, "mode": route.mode,
                               "remote_path": route.remote_path, "remote_version": remote.version}}

    def check_write(self, owner: SecretOwner, path: str) -> Route | None:
        """Refuse a write to a proxied path, or to a synced one whose backend refuses writes."""
        route = self.route(owner, path)
        if route is None or route.direction == "export":   # exported paths are ScaiVault's own
            return None
        if route.mode == "proxy" or route.write_policy != "write_through":
            raise ScaiVaultError("federated_path_read_only",
                                 f"{path} is served by federation backend {route.backend_name} ({route.mode}); "
                                 "write it in the backend", details={"path": path, "backend_id": route.backend_id})
        return route

    def write_through(self, owner: SecretOwner, path: str, req: WriteRequest, route: Route, actor: str,
                      audit, **write_options) -> tuple[dict, bool]:
        """A write to a synced path: the backend first (it stays authoritative), then the local copy,
        then the sync state, so the next sync sees both sides agree."""
        row = self._row(owner, route.backend_id)
        client = self.client(owner, row, audit)
        try:
            remote_version = client.write(route.remote_path, req.data)
        finally:
            client.close()
        view, created = self.runtime.secret_store.write(owner, path, req, actor, audit, **write_options)
        self._save_state(route.backend_id, path, route.remote_path, remote_version, view["version"])
        return view, created

    # ------------------------------------------------------------------ sync
    def due_backends(self) -> list[dict]:
        return self.db.query("""SELECT id, tenant_id, partner_id FROM federation_backends
                                 WHERE mode = 'sync' AND next_sync_at <= now() ORDER BY next_sync_at LIMIT 50""")

    def sync(self, owner: SecretOwner, backend_id: str, trigger: str = "manual") -> dict:
        """One sync run of a backend, under an advisory lock (one runner across instances)."""
        row = self._row(owner, backend_id)
        if row["mode"] != "sync":
            raise ScaiVaultError("invalid_request", "the backend is in proxy mode; PATCH mode to sync first")
        started = time.perf_counter()
        audit = system_audit(owner, backend_id)
        with self.db.session() as lock:
            got = lock.scalar("SELECT pg_try_advisory_lock(:ns, hashtext(:id))", ns=SYNC_LOCK & 0x7FFFFFFF, id=backend_id)
            if not got:
                return {"backend_id": backend_id, "status": "skipped", "reason": "another sync of it is running"}
            try:
                result = self._sync_locked(owner, row, audit)
                error = None
            except ScaiVaultError as exc:
                result, error = {"status": "failed", "error": exc.message}, exc.message
            finally:
                lock.scalar("SELECT pg_advisory_unlock(:ns, hashtext(:id))", ns=SYNC_LOCK & 0x7FFFFFFF, id=backend_id)
        duration_ms = int((time.perf_counter() - started) * 1000)
        result.update(backend_id=backend_id, trigger=trigger, duration_ms=duration_ms)
        self.db.execute("""UPDATE federation_backends SET last_sync_at = now(), last_sync_duration_ms = :d,
                                  last_sync_result = CAST(:r AS jsonb), last_error = CAST(:e AS text),
                                  status = CASE WHEN CAST(:e AS text) IS NULL THEN 'healthy' ELSE 'degraded' END,
                                  next_sync_at = now() + make_interval(secs => sync_interval)
                            WHERE id = :id""", id=backend_id, d=duration_ms, r=json.dumps(result), e=error)
        record_now(self.runtime, audit("federation_sync", success=error is None,
                                       extra={k: v for k, v in result.items() if k != "backend_id"}))
        return result

    def _sync_locked(self, owner: SecretOwner, row: dict, audit) -> dict:
        mapping = PathMapping.parse(row["path_mapping"])
        client = self.client(owner, row, audit)
        try:
            if (row["config"].get("direction") or "import") == "export":
                return self._export(owner, row, mapping, client, audit)
            return self._import(owner, row, mapping, client, audit)
        finally:
            client.close()

    def _state(self, backend_id: str) -> dict[str, dict]:
        return {r["path"]: r for r in self.db.query("SELECT * FROM federation_sync_state WHERE backend_id = :id",
                                                   id=backend_id)}

    def _save_state(self, backend_id: str, path: str, remote_path: str, remote_version: str, local_version: int) -> None:
        self.db.execute("""INSERT INTO federation_sync_state (backend_id, path, remote_path, remote_version,
                                                              local_version, synced_at)
                           VALUES (:b, :p, :r, :rv, :lv, now())
                           ON CONFLICT (backend_id, path) DO UPDATE SET remote_path = :r, remote_version = :rv,
                                 local_version = :lv, synced_at = now()""",
                        b=backend_id, p=path, r=remote_path, rv=remote_version, lv=local_version)
        self.db.execute("""UPDATE federation_conflicts SET resolved_at = now()
                            WHERE backend_id = :b AND path = :p AND resolved_at IS NULL""", b=backend_id, p=path)

    def _conflict(self, backend_id: str, path: str, remote_path: str, reason: str, local_version: int | None,
                  remote_version: str | None) -> None:
        self.db.execute("""INSERT INTO federation_conflicts (id, backend_id, path, remote_path, reason, local_version,
                                                             remote_version)
                           SELECT :id, :b, :p, :r, :reason, :lv, :rv
                            WHERE NOT EXISTS (SELECT 1 FROM federation_conflicts WHERE backend_id = :b AND path = :p
                                                 AND resolved_at IS NULL)""",
                        id="fcf_" + secrets.token_hex(8), b=backend_id, p=path, r=remote_path, reason=reason,
                        lv=local_version, rv=remote_version)

    def _local(self, owner: SecretOwner, path: str) -> dict | None:
        return self.db.one("""SELECT current_version, deleted_at FROM secrets WHERE tenant_id = :t AND path = :p""",
                           t=owner.tenant_id, p=path)

    def _import(self, owner, row, mapping, client, audit) -> dict:
        store = self.runtime.secret_store
        state = self._state(row["id"])
        counts = {"status": "ok", "direction": "import", "written": 0, "unchanged": 0, "conflicts": 0, "deleted": 0}
        seen: set[str] = set()
        for rule in mapping.rules:
            remote_paths = [rule.remote] if not rule.recursive else client.list(rule.remote_prefix)
            for remote_path in remote_paths:
                local_path = mapping.to_local(remote_path)
                if local_path is None or local_path in seen or len(seen) >= MAX_SYNC_PATHS:
                    continue
                seen.add(local_path)
                try:
                    remote = client.read(remote_path)
                except RemoteNotFound:
                    continue
                known = state.get(local_path)
                local = self._local(owner, local_path)
                local_version = local["current_version"] if local and local["deleted_at"] is None else None
                if known and known["remote_version"] == remote.version:
                    counts["unchanged"] += 1
                    continue
                if local_version is not None and (known is None or known["local_version"] != local_version):
                    # present locally and not (or no longer) what the last sync wrote
                    current = store.read(owner, local_path, None, audit)["data"]
                    if current == remote.data:
                        self._save_state(row["id"], local_path, remote_path, remote.version, local_version)
                        counts["unchanged"] += 1
                    else:
                        self._conflict(row["id"], local_path, remote_path,
                                       "changed locally and in the backend" if known else "exists locally with other data",
                                       local_version, remote.version)
                        counts["conflicts"] += 1
                    continue
                view, _ = store.write(owner, local_path, WriteRequest(data=remote.data, metadata=None),
                                      f"system:federation:{row['id']}", audit)
                self._save_state(row["id"], local_path, remote_path, remote.version, view["version"])
                counts["written"] += 1
        if (row["config"].get("delete_policy") or "keep") == "propagate" and len(seen) < MAX_SYNC_PATHS:
            for path, known in state.items():
                if path in seen:
                    continue
                local = self._local(owner, path)
                if local and local["deleted_at"] is None and local["current_version"] == known["local_version"]:
                    store.delete(owner, path, False, f"system:federation:{row['id']}", audit)
                    counts["deleted"] += 1
                self.db.execute("DELETE FROM federation_sync_state WHERE backend_id = :b AND path = :p",
                                b=row["id"], p=path)
        return counts

    def _export(self, owner, row, mapping, client, audit) -> dict:
        store = self.runtime.secret_store
        state = self._state(row["id"])
        counts = {"status": "ok", "direction": "export", "written": 0, "unchanged": 0, "conflicts": 0, "deleted": 0}
        seen: set[str] = set()
        for rule in mapping.rules:
            prefix = rule.local_prefix
            locals_ = self.db.query("""SELECT path, current_version FROM secrets
                                        WHERE tenant_id = :t AND deleted_at IS NULL
                                          AND (path = :exact OR (:rec AND path LIKE :like ESCAPE '\\'))
                                        ORDER BY path LIMIT :cap""",
                                    t=owner.tenant_id, exact=rule.local, rec=rule.recursive,
                                    like=prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
                                    cap=MAX_SYNC_PATHS)
            for local in locals_:
                path = local["path"]
                remote_path = mapping.to_remote(path)
                if remote_path is None or path in seen:
                    continue
                seen.add(path)
                known = state.get(path)
                if known and known["local_version"] == local["current_version"]:
                    counts["unchanged"] += 1
                    continue
                if known is not None:
                    try:
                        current_remote = client.read(remote_path).version
                    except RemoteNotFound:
                        current_remote = None
                    if current_remote is not None and current_remote != known["remote_version"]:
                        self._conflict(row["id"], path, remote_path, "changed locally and in the backend",
                                       local["current_version"], current_remote)
                        counts["conflicts"] += 1
                        continue
                data = store.read(owner, path, None, audit)["data"]
                remote_version = client.write(remote_path, data)
                self._save_state(row["id"], path, remote_path, remote_version, local["current_version"])
                counts["written"] += 1
        if (row["config"].get("delete_policy") or "keep") == "propagate":
            for path, known in state.items():
                if path not in seen:
                    try:
                        client.delete(known["remote_path"])
                    except RemoteNotFound:
                        pass
                    self.db.execute("DELETE FROM federation_sync_state WHERE backend_id = :b AND path = :p",
                                    b=row["id"], p=path)
                    counts["deleted"] += 1
        return counts
