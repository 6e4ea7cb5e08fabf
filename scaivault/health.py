"""Readiness and detailed health checks, each bounded by a short timeout."""
from __future__ import annotations

import re
import threading
import time
from typing import Callable

from .db import DatabaseUnavailable, connect
from .errors import ScaiVaultError
from .migrate import MigrationRunner
from .runtime import Runtime

CHECK_TIMEOUT_SECONDS = 2.0


class HealthChecker:
    """Runs the database, Redis and encryption checks concurrently with a hard deadline."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._schema_current = False

    def check_database(self) -> dict:
        started = time.perf_counter()
        conn = connect(self.runtime.settings.database_url, timeout=CHECK_TIMEOUT_SECONDS)
        try:
            conn.run("SELECT 1")
        finally:
            conn.close()
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

    def check_redis(self) -> dict:
        started = time.perf_counter()
        self.runtime.redis.ping()
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
            result["next_retry_at"] = row["next_retry_at"].isoformat().replace("+00:00", "Z")
        return result

    def checks(self, detailed: bool = False) -> dict[str, Callable[[], dict]]:
        checks = {"database": self.check_database, "redis": self.check_redis,
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

        Readiness covers database, Redis and encryption; `detailed` adds object storage.
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
            else:
                results[name] = {"status": "error"}
                errors[name] = "timed out" if value is None else _describe(value)
        return results, errors


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
