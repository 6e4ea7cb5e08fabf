"""Warming a new worker before it accepts: pool opened, JWKS loaded, keys unwrapped.

A respawned worker that starts cold pays for all of this on its first requests (and, because
clients keep connections open, gets traffic late). gunicorn's post_worker_init hook calls
`warm_worker` after the app is loaded and before the worker accepts; it runs for at most
WORKER_WARMUP_TIMEOUT and then the worker accepts whatever state it reached (the rest goes on
in the background). Every step is best effort: a dependency that is down makes the step fail
and the requests that need it answer their usual 503.

Per connection (every pooled connection, in parallel): the catalog caches, the hot statements
prepared (hot_statements(): the audited read batch, the audit append, the one-statement write and
the write batch, the event outbox insert, a token's identity rows, the policy loader), and the read
path run once in a transaction that is always rolled back, on a miss and on a secret row inserted there (PostgreSQL
compiles a PL/pgSQL function and plans its statements per backend, on first call: that was most
of a respawned worker's first read). Per process: the periodic snapshots the read path
consults, the compiled policies of recently active identities (a hint list other processes
keep in Redis, see scaivault.policy.cache; the policies themselves come from the database), and
the identity rows of recently active principals (tenant, user and groups or application, stored
grants: another hint list, see scaivault.auth.authenticator; the rows come from the database and
are dropped with the auth epoch like every derived identity).
What cannot be warmed is per token: its signature check happens on its first request to this
process (sharing verified tokens through Redis would let whoever can write to Redis authenticate
as anyone).
"""
from __future__ import annotations

import codecs
import json
import logging
import re
import secrets
import threading
import time
from typing import Any

log = logging.getLogger("scaivault.server")

MAX_PARTNER_KEYS = 1000
MAX_TENANT_KEYS = 5000
MAX_POLICY_SETS = 200          # recently active identities whose policies a new worker compiles (newest first)
POLICY_STEP_SECONDS = 0.5      # at most this long on them: accepting sooner beats the last few loads
MAX_PRINCIPALS = 1000          # recently active principals whose identity rows a new worker reads (newest first)
IDENTITY_STEP_SECONDS = 0.5    # at most this long on them (100 principals per statement)
WARMUP_KEY = "~worker-warmup"  # a tenant, partner and path no real one can be (like readiness's chain key)


def hot_statements() -> tuple[str, ...]:
    """The statements every request of their kind runs prepared (Session.prepared), in text form."""
    from .audit.writer import _APPEND_SQL, _READ_BATCH_SQL
    from .auth.authenticator import IDENTITY_ROWS_SQL
    from .events.outbox import _INSERT_SQL
    from .services.policies import LOAD_BOUND_SQL
    from .services.secrets import _WRITE_BATCH_SQL, _WRITE_SQL

    return (_READ_BATCH_SQL, _APPEND_SQL, _WRITE_SQL, _WRITE_BATCH_SQL, _INSERT_SQL, IDENTITY_ROWS_SQL,
            LOAD_BOUND_SQL[True])


def warm_worker(runtime, timeout: float, rate_limits=None, app=None) -> dict[str, Any]:
    """Warm `runtime` (and the app's rate-limit storage and routing, when given) for at most
    `timeout` seconds; returns what was done (for the log and tests)."""
    report: dict[str, Any] = {"done": False}
    if timeout <= 0:
        return report
    started = time.monotonic()
    deadline = started + timeout
    thread = threading.Thread(target=_warm, args=(runtime, deadline, report, rate_limits, app), name="worker-warmup",
                              daemon=True)
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


def _warm(runtime, deadline: float, report: dict, rate_limits, app) -> None:
    errors: dict[str, str] = report.setdefault("errors", {})
    steps = [("database", _open_pool), ("jwks", _load_jwks), ("keys", _unwrap_keys), ("redis", _connect_redis),
             ("snapshots", _load_snapshots), ("policies", _compile_recent_policies),
             ("identities", _read_recent_identities)]
    if rate_limits is not None and rate_limits.storage_uri.startswith(("redis", "rediss", "unix")):
        # the limiter has its own Redis pool: connect it too (its first EVALSHA would pay for it)
        steps.append(("rate_limit_storage", lambda runtime, deadline: _connect_rate_limits(rate_limits)))
    if app is not None:
        steps.append(("routes", lambda runtime, deadline: _match_every_route(app, deadline)))
        steps.append(("metrics", lambda runtime, deadline: _prime_read_metrics(app)))
    took: dict[str, int] = report.setdefault("step_ms", {})
    for name, step in steps:
        if time.monotonic() >= deadline:
            errors[name] = "out of time"
            continue
        started = time.monotonic()
        try:
            report[name] = step(runtime, deadline)
        except Exception as exc:   # best effort: the requests that need it will say what is wrong
            errors[name] = getattr(exc, "code", None) or type(exc).__name__
        took[name] = round((time.monotonic() - started) * 1000)
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
        _warm_statements(conn, deadline)

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


def _warm_statements(conn, deadline: float) -> None:
    """Prepare the hot statements on `conn` and run the read path once, rolled back."""
    from .audit.entry import AuditEntry
    from .audit.writer import _READ_BATCH_SQL, entry_document
    from .auth.authenticator import IDENTITY_ROWS_SQL
    from .db import Session

    if time.monotonic() >= deadline:
        return
    session = Session(conn)
    for sql in hot_statements():
        session.prepared(sql)
    session.prepared(IDENTITY_ROWS_SQL).run(items="[]")      # planned once per backend (reads nothing)
    # nothing of this commits: no secret has these names, and the audit append is rolled back
    probe = [{"tenant": WARMUP_KEY, "partner": WARMUP_KEY, "path": WARMUP_KEY},
             {"tenant": None, "partner": WARMUP_KEY, "path": WARMUP_KEY}]
    doc = entry_document(AuditEntry(action="worker_warmup", tenant_id=WARMUP_KEY, identity_type="system"), "version")
    conn.run("BEGIN")
    try:
        conn.run("SET LOCAL statement_timeout = 2000")
        conn.run("SET LOCAL lock_timeout = 1000")
        session.prepared(_READ_BATCH_SQL).run(items=json.dumps(probe))
        # and a read that finds its secret (the branch a real read takes: the audit append inside the
        # function, its result row), on a row inserted here (a path per connection: no lock between them)
        path = f"{WARMUP_KEY}/{secrets.token_hex(8)}"
        conn.run("""WITH s AS (INSERT INTO secrets (partner_id, tenant_id, path, secret_type, max_versions, current_version)
                               VALUES (:k, :k, :path, 'kv', 1, 1) RETURNING id)
                    INSERT INTO secret_versions (secret_id, version, partner_id, tenant_id, sealed_data, size_bytes)
                    SELECT id, 1, :k, :k, '\\x00'::bytea, 1 FROM s""", k=WARMUP_KEY, path=path)
        found = session.prepared(_READ_BATCH_SQL).run(items=json.dumps(
            [{"tenant": WARMUP_KEY, "partner": WARMUP_KEY, "path": path, "version": None, "audit": doc}]))
        if not found or not found[0][-1]:
            raise RuntimeError("the warm-up read did not take the found branch")
    finally:
        conn.run("ROLLBACK")


def _load_snapshots(runtime, deadline: float) -> bool:
    """The per-process snapshots every read consults (federated paths, secret.accessed listeners)."""
    from .lifecycle.hooks import ACCESS_LISTENERS

    runtime.federation.warm()
    ACCESS_LISTENERS.wanted(runtime.db, None)
    codecs.lookup("idna")         # the first request's URL decoding would import the codec
    return True


def _compile_recent_policies(runtime, deadline: float) -> dict[str, int]:
    """Compile the policy sets of the identities other processes saw recently (bounded in number
    and time); each load is the same database query a request makes."""
    deadline = min(deadline, time.monotonic() + POLICY_STEP_SECONDS)
    cache = runtime.policy_cache
    done = {"policy_sets": 0, "tenants": 0}
    tenants: set[str] = set()
    for tenant_id, partner_id, identity_ids in cache.recent_scopes(MAX_POLICY_SETS):
        if time.monotonic() >= deadline:
            break
        if tenant_id is not None and tenant_id not in tenants:
            tenants.add(tenant_id)
            runtime.authenticator.tenant(tenant_id)
            done["tenants"] += 1
        cache.get(tenant_id, partner_id, identity_ids, note=False)
        done["policy_sets"] += 1
    return done


def _read_recent_identities(runtime, deadline: float) -> dict[str, int]:
    """Read the identity rows of the principals other processes saw recently (bounded in number and
    time): a known principal's new token then costs its signature check only. The hint list only
    chooses which rows to read; they come from the database, keyed exactly as a token selects them."""
    deadline = min(deadline, time.monotonic() + IDENTITY_STEP_SECONDS)
    authenticator = runtime.authenticator
    keys = authenticator.recent_principals(MAX_PRINCIPALS)
    return {"hinted": len(keys), "principals": authenticator.warm_rows(keys, deadline)}


def _match_every_route(app, deadline: float) -> int:
    """Match one URL of every route once: werkzeug's matcher compiles each converter's regular
    expression on first use (re's per-process cache), which a first request would pay for."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import RequestRedirect

    adapter = app.url_map.bind("localhost")
    matched = 0
    for rule in app.url_map.iter_rules():
        if time.monotonic() >= deadline:
            break
        path = _SAMPLE_SEGMENT.sub("1", rule.rule)
        for method in sorted(rule.methods or {"GET"}):
            try:
                adapter.match(path, method=method)
            except (HTTPException, RequestRedirect):
                pass
        matched += 1
    return matched


_SAMPLE_SEGMENT = re.compile(r"<[^>]+>")


def _prime_read_metrics(app) -> int:
    """Create the series a secret read updates (labelled children, zero until used): in multiprocess
    mode a new series writes its keys into this process's files (a histogram one per bucket), which
    the first read would pay for. Only series whose zero is true (counts, durations, requests in
    progress); never a gauge whose zero means something (the rate-limit bucket fill)."""
    from werkzeug.exceptions import HTTPException

    from . import metrics

    try:
        endpoint, _ = app.url_map.bind("localhost").match("/v1/secrets/warm-up", method="GET")
    except HTTPException:
        return 0
    category = getattr(app.view_functions.get(endpoint), "rate_category", None)
    if not category:
        return 0
    metrics.REQUESTS.labels(method="GET", path_category=category, status="200")
    metrics.REQUEST_DURATION.labels(method="GET", path_category=category)
    metrics.ACTIVE_REQUESTS.labels(path_category=category)
    metrics.labelled(metrics.GROUP_COMMIT_SIZE, "read")
    return 4


def _load_jwks(runtime, deadline: float) -> int:
    """Fetch the signing keys and run each key's signature check once (on a made-up signature)."""
    jwks = runtime.authenticator.jwks
    jwks.preload()
    return jwks.exercise()


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


def _connect_rate_limits(rate_limits) -> bool:
    """The limiter's own Redis pool connected, its bucket script loaded, and the lease reconciler
    started (a new thread's first start switches to every waiting greenlet: not on a request)."""
    rate_limits.limiter.storage.get_connection().ping()
    rate_limits.prepare()
    return True


def _connect_redis(runtime, deadline: float) -> bool:
    runtime.redis.ping()
    return True

