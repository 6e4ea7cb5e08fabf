"""Warming a new worker before it accepts: pool opened, JWKS loaded, keys unwrapped.

A respawned worker that starts cold pays for all of this on its first requests (and, because
clients keep connections open, gets traffic late). gunicorn's post_worker_init hook calls
`warm_worker` after the app is loaded and before the worker accepts; it runs for at most
WORKER_WARMUP_TIMEOUT and then the worker accepts whatever state it reached (the rest goes on
in the background). Every step is best effort: a dependency that is down makes the step fail
and the requests that need it answer their usual 503.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("scaivault.server")

MAX_PARTNER_KEYS = 1000
MAX_TENANT_KEYS = 5000


def warm_worker(runtime, timeout: float, rate_limits=None) -> dict[str, Any]:
    """Warm `runtime` (and the app's rate-limit storage) for at most `timeout` seconds; returns
    what was done (for the log and tests)."""
    report: dict[str, Any] = {"done": False}
    if timeout <= 0:
        return report
    started = time.monotonic()
    deadline = started + timeout
    thread = threading.Thread(target=_warm, args=(runtime, deadline, report, rate_limits), name="worker-warmup", daemon=True)
    thread.start()
    thread.join(timeout)
    report["seconds"] = round(time.monotonic() - started, 3)
    if thread.is_alive():
        log.warning("worker warm-up did not finish in time; accepting now, the rest continues in the background",
                    extra={"timeout_s": timeout, **_public(report)})
    else:
        log.info("worker warmed up", extra=_public(report))
    return report


def _public(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "errors"} | {"failed_steps": sorted(report.get("errors", {}))}


def _warm(runtime, deadline: float, report: dict, rate_limits) -> None:
    errors: dict[str, str] = report.setdefault("errors", {})
    steps = [("database", _open_pool), ("jwks", _load_jwks), ("keys", _unwrap_keys), ("redis", _connect_redis)]
    if rate_limits is not None and rate_limits.storage_uri.startswith(("redis", "rediss", "unix")):
        # the limiter has its own Redis pool: connect it too (its first EVALSHA would pay for it)
        steps.append(("rate_limit_storage", lambda runtime, deadline: rate_limits.limiter.storage.get_connection().ping()))
    for name, step in steps:
        if time.monotonic() >= deadline:
            errors[name] = "out of time"
            continue
        try:
            report[name] = step(runtime, deadline)
        except Exception as exc:   # best effort: the requests that need it will say what is wrong
            errors[name] = getattr(exc, "code", None) or type(exc).__name__
    report["done"] = True


def _open_pool(runtime, deadline: float) -> int:
    """Open every connection of the pool (in parallel) and return them to it."""
    pool = runtime.db.pool()
    opened: list = []
    lock = threading.Lock()

    def one() -> None:
        conn = pool.checkout()
        with lock:
            opened.append(conn)
        _warm_catalog(conn, deadline)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(pool.size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for conn in opened:
            pool.checkin(conn)
        return len(opened)


def _warm_catalog(conn, deadline: float) -> None:
    """Plan a query on every table once: a new PostgreSQL backend starts with empty catalog caches,
    and filling them (relations, indexes, statistics) is most of a cold connection's first-request cost."""
    tables = conn.run("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition")
    for (name,) in tables:
        if time.monotonic() >= deadline:
            return
        conn.run('EXPLAIN SELECT * FROM "' + name.replace('"', '""') + '"')


def _load_jwks(runtime, deadline: float) -> bool:
    runtime.authenticator.jwks.preload()
    return True


def _unwrap_keys(runtime, deadline: float) -> dict[str, int]:
    """The encryption root, then every partner key and active tenant key (bounded in number)."""
    keyring = runtime.keyring
    keyring.root                                   # loads and verifies the root record
    partners = [r["partner_id"] for r in runtime.db.query(
        "SELECT partner_id FROM partner_keys ORDER BY created_at DESC LIMIT :n", n=MAX_PARTNER_KEYS)]
    done = {"partner_keys": 0, "tenant_keys": 0}
    for partner_id in partners:
        if time.monotonic() >= deadline:
            return done
        keyring.partner_aead(partner_id)
        done["partner_keys"] += 1
    tenants = runtime.db.query("SELECT partner_id, tenant_id FROM tenant_keys WHERE status = 'active' "
                               "ORDER BY created_at DESC LIMIT :n", n=MAX_TENANT_KEYS)
    for row in tenants:
        if time.monotonic() >= deadline:
            return done
        keyring.active_tenant_key(row["partner_id"], row["tenant_id"])
        done["tenant_keys"] += 1
    return done


def _connect_redis(runtime, deadline: float) -> bool:
    runtime.redis.ping()
    return True

