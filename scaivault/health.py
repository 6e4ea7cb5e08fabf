"""Readiness and detailed health checks, each bounded by a short timeout.

Readiness answers "can this instance serve requests now", checking each dependency the way
requests use it: the database through the same pool, the audit log with the same append
statement (in a transaction that is rolled back), the KMS through the keyring's breaker.
A check is `ok`, `degraded` (requests still succeed: Redis lost, the rate limiter counting
in memory; the KMS on its secondary key or on cached keys) or `error` (requests fail).
"""
from __future__ import annotations

import re
import threading
import time
from typing import Callable

from pg8000.exceptions import DatabaseError

from .db import DatabaseUnavailable
from .pagination import timestamp
from .errors import ScaiVaultError
from .migrate import MigrationRunner
from .runtime import Runtime

CHECK_TIMEOUT_SECONDS = 2.0
# failures of these components leave requests working: the answer stays 200 with the
# component reported as degraded
DEGRADABLE = frozenset({"redis"})


class HealthChecker:
    """Runs the database, Redis and encryption checks concurrently with a hard deadline."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._schema_current = False

    def check_database(self) -> dict:
        # through the pool requests use: a connection the restart cut is replaced here exactly
        # as a request replaces it, so readiness turns green when requests succeed again
        started = time.perf_counter()
        with self.runtime.db.session() as session:
            session.query("SELECT 1")
        latency = (time.perf_counter() - started) * 1000
        if not self._schema_current:
            state = MigrationRunner(self.runtime.settings.database_url).state()
            if state.problem:
                raise RuntimeError(state.problem)
            if state.pending:
                raise RuntimeError(f"{len(state.pending)} migration(s) pending; run `scaivault migrate`")
            self._schema_current = True
        pool = self.runtime.db.pool().stats
        return {"status": "ok", "latency_ms": round(latency), "pool_size": pool["pool_size"],
                "pool_available": pool["pool_available"]}

    def check_audit(self) -> dict:
        """The audit append statement itself, in a transaction that is always rolled back.

        Every tenant-data request fails (503 audit_unavailable) when this cannot run: a revoked
        INSERT, a full disk, a missing partition, a lock that does not clear.
        """
        from .audit.entry import AuditEntry, canonical_bytes
        from .audit.writer import _APPEND_SQL, CHAIN_LANES, GENESIS_HASH

        values = AuditEntry(action="readiness_probe", identity_type="system").stored_values()
        started = time.perf_counter()
        with self.runtime.db.session() as session:
            session.conn.run("BEGIN")
            try:
                session.conn.run(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT_SECONDS * 1000)}")
                session.conn.run("SET LOCAL lock_timeout = 1000")
                # a chain key no tenant can have, so the probe never waits on a tenant's head row
                session.prepared(_APPEND_SQL).run(chain_key="~readiness-probe", lanes=CHAIN_LANES,
                                                  genesis=GENESIS_HASH, canon=canonical_bytes(values), **values)
            except DatabaseError as exc:        # the server refused; a lost connection propagates
                session.conn.run("ROLLBACK")
                raise RuntimeError("the audit log cannot be written: " + _audit_reason(exc)) from None
            session.conn.run("ROLLBACK")
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000)}

    def check_redis(self) -> dict:
        from .redis_store import is_cluster

        started = time.perf_counter()
        client = self.runtime.redis
        if is_cluster(client):
            # every primary must answer and the cluster must serve all its slots: a node down
            # means some keys (buckets, policy counters) cannot be reached
            client.ping(target_nodes=client.PRIMARIES)
            state = client.cluster_info().get("cluster_state")
            if state != "ok":
                raise RuntimeError(f"Redis Cluster state is {state}")
        else:
            client.ping()
        latency = (time.perf_counter() - started) * 1000
        result = {"status": "ok", "latency_ms": round(latency)}
        try:
            used = self.runtime.redis.info("memory").get("used_memory", 0)
            result["memory_used_mb"] = round(used / 1048576)
        except Exception:
            pass
        return result

    def check_encryption(self) -> dict:
        keyring = getattr(self.runtime, "keyring", None)
        if keyring is None:
            return {"status": "ok", "key_status": "unconfigured"}
        result = keyring.health()
        if result.get("status") == "error":
            raise RuntimeError(result.get("message") or "encryption unavailable")
        return result

    def check_storage(self) -> dict:
        started = time.perf_counter()
        self.runtime.storage.exists("health/probe")
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000)}

    def check_dynamic_leases(self) -> dict:
        """Live leases and revocations awaiting a retry (degraded while any is failing)."""
        row = self.runtime.db.one("""SELECT count(*) FILTER (WHERE state = 'active') AS active,
                                            count(*) FILTER (WHERE state = 'revoke_failed') AS revoke_failed,
                                            min(due_at) FILTER (WHERE state = 'revoke_failed') AS next_retry_at
                                       FROM dynamic_leases WHERE state <> 'revoked'""")
        result = {"status": "degraded" if row["revoke_failed"] else "ok", "active": row["active"],
                  "revoke_failed": row["revoke_failed"]}
        if row["next_retry_at"] is not None:
            result["next_retry_at"] = timestamp(row["next_retry_at"])
        return result

    def checks(self, detailed: bool = False) -> dict[str, Callable[[], dict]]:
        checks = {"database": self.check_database, "audit": self.check_audit, "redis": self.check_redis,
                  "encryption": self.check_encryption}
        provider = self.runtime.settings.storage_provider
        if detailed and provider != "db":
            # spec/10 section 9 shows it as checks.s3; named after the configured provider
            checks[provider] = self.check_storage
        if detailed:
            checks["dynamic_leases"] = self.check_dynamic_leases
        return checks

    def run(self, detailed: bool = False) -> tuple[dict[str, dict], dict[str, str]]:
        """Return ({component: result}, {component: error message}) within the deadline.

        Readiness covers database, audit log, Redis and encryption; `detailed` adds object
        storage. A degradable component that fails is reported `degraded`, not an error.
        """
        results: dict[str, dict] = {}
        errors: dict[str, str] = {}
        checks = self.checks(detailed)
        # daemon threads, not an executor: leaving an executor (or exiting the process) waits
        # for every thread, so one hung dependency would hold the probe for its socket timeout
        outcomes: dict[str, tuple[bool, object]] = {}
        threads = {}
        for name, fn in checks.items():
            def work(name=name, fn=fn):
                try:
                    outcomes[name] = (True, fn())
                except Exception as exc:  # reported below; the message never carries data
                    outcomes[name] = (False, exc)
            threads[name] = threading.Thread(target=work, name=f"health-{name}", daemon=True)
            threads[name].start()
        deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS + 0.5
        for name, thread in threads.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            ok, value = outcomes.get(name, (False, None))
            if ok:
                results[name] = value
            elif name in DEGRADABLE:
                results[name] = {"status": "degraded",
                                 "message": "timed out" if value is None else _describe(value)}
            else:
                results[name] = {"status": "error"}
                errors[name] = "timed out" if value is None else _describe(value)
        return results, errors


def _audit_reason(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], dict):
        fields = args[0]
        return {"42501": "permission denied on the audit tables", "57014": "the audit insert timed out",
                "55P03": "the audit tables are locked"}.get(fields.get("C"), str(fields.get("M") or "insert failed"))
    return getattr(exc, "message", None) or type(exc).__name__


def _describe(exc: Exception) -> str:
    # readiness is unauthenticated: say what is wrong, not where (no host names or URLs)
    if isinstance(exc, DatabaseUnavailable):
        text = exc.reason
    elif isinstance(exc, ScaiVaultError):
        text = exc.message
    else:
        text = str(exc).strip() or type(exc).__name__
    if "refused" in text.lower():
        return "Connection refused"
    text = re.sub(r"^Error \S+ connecting to \S+?\.\s*", "", text)
    return text[:200]
