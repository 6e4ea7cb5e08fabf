"""Rate limits per (identity, category); see spec/10 section 8.

CATEGORIES is the one list of category keys: every endpoint names one of them (or None for
health and metrics probes), and RATE_LIMITS may override any of them by the same key.

Each app gets a flask-limiter `Limiter` whose storage (Redis at REDIS_URL, `memory://` in dev
mode without Redis) holds the buckets, so limits hold across instances. The algorithm is the
spec's token bucket per (category, identity): capacity = the category's rate, refilled
continuously at rate/window per second; a request takes one token. `enforce()` spends one
storage round trip per request (an atomic Lua script that refills, takes and returns the level,
timed by the Redis server's clock so that instances agree). When Redis fails, the process keeps
buckets in memory (per instance), logs a warning once, shows it in health and metrics, and
probes Redis again with a back-off.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from flask import current_app, g

from . import patches
from .errors import ScaiVaultError

log = logging.getLogger("scaivault.ratelimit")

# key -> (rate, window seconds): the managed-service defaults of spec/10 section 8.2
CATEGORIES: dict[str, tuple[int, int]] = {
    "secrets:read": (1000, 60),
    "secrets:write": (100, 60),
    "secrets:delete": (100, 60),
    "secrets:list": (100, 60),
    "secrets:batch": (100, 60),
    "secrets:batch_metadata": (100, 60),
    "audit:read": (50, 60),
    "audit:export": (5, 60),
    "policies": (50, 60),
    "policies:test": (200, 60),
    "pki:issue": (50, 60),
    "pki:admin": (20, 60),
    "acme:order": (30, 60),
    "pki:public": (600, 60),         # anonymous CA certificates, CRLs and http-01 answers, keyed by client IP
    "webhooks": (20, 60),
    "subscriptions": (20, 60),
    "subscriptions:poll": (240, 60),
    "federation": (20, 60),
    "dynamic:generate": (100, 60),
    "dynamic:admin": (20, 60),
    "leases": (100, 60),
    "identity:read": (100, 60),
    "identity:sync": (5, 60),
    "identity:webhook": (600, 60),   # ScaiKey's signed deliveries, keyed by client IP
    "auth": (300, 60),               # whoami, introspect, personal tokens
    "system": (20, 60),              # key rotation, plugin listing
}

KEY_PREFIX = "scaivault:rl"
REDIS_TIMEOUT_SECONDS = 0.25         # a slow Redis must not stall every request
RETRY_BACKOFF_SECONDS = (1, 2, 4, 8, 15, 30)


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first RATE_LIMITS key that is not a known category."""
    unknown = sorted(k for k in overrides if k not in CATEGORIES)
    if unknown:
        raise ValueError(f"unknown category {unknown[0]!r}; known categories: {', '.join(CATEGORIES)}")


def effective_limits(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """CATEGORIES with the RATE_LIMITS overrides applied: {category: (rate, window seconds)}."""
    limits = dict(CATEGORIES)
    for category, spec in overrides.items():
        limits[category] = (int(spec["rate"]), int(spec["window"]))
    return limits


@dataclass(frozen=True)
class Decision:
    """One request's outcome for its category bucket."""

    category: str
    limit: int             # bucket capacity
    remaining: int         # whole tokens left after this request
    reset_at: int          # Unix time the bucket is full again
    allowed: bool
    retry_after: int = 0   # seconds until a refused request could pass


# Refill, put back `giveback` (a lease's unused tokens), take `cost` (or up to `want` >= cost
# when a lease is asked for and the bucket has them), store; returns {allowed, tokens, now,
# taken}. Tokens travel as strings (Lua numbers would be truncated to integers on the way
# back). TIME is the Redis server's clock.
TOKEN_BUCKET_LUA = """
local capacity = tonumber(ARGV[1])
local per_second = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local giveback = tonumber(ARGV[4] or '0')
local want = tonumber(ARGV[5] or ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
elseif now > at then
  tokens = math.min(capacity, tokens + (now - at) * per_second)
end
tokens = math.min(capacity, tokens + giveback)
local allowed = 0
local taken = 0
if tokens >= cost then
  taken = math.max(cost, math.min(want, math.floor(tokens)))
  tokens = tokens - taken
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / per_second * 1000) + 1000)
return {allowed, tostring(tokens), tostring(now), tostring(taken)}
"""

# Leases (docs/decisions.md, "Rate limits without a round trip"): a bucket of at least
# LEASE_MIN_CAPACITY tokens lends a worker a slice of LEASE_FRACTION of its capacity, taken from
# the shared bucket in Redis before any of it is spent; requests then decide in memory until the
# slice is used up or LEASE_SECONDS have passed, and unused tokens go back to the shared bucket.
# Smaller buckets stay exact: every request is one Redis round trip.
LEASE_MIN_CAPACITY = 500
LEASE_FRACTION = 0.01
LEASE_SECONDS = 1.0


@dataclass
class _Lease:
    left: float              # tokens this process holds and may spend without asking
    shared: float            # the shared bucket's level when the slice was taken
    expires: float           # time.monotonic() after which the rest goes back


class MemoryBuckets:
    """The same token buckets in process memory (dev without Redis, or Redis unreachable)."""

    MAX_BUCKETS = 100_000

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, capacity: int, per_second: float, cost: int) -> tuple[bool, float, float]:
        now = time.time()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(capacity), now))
            tokens = min(float(capacity), tokens + max(0.0, now - at) * per_second)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._buckets.clear()   # full buckets are the default state; dropping them is safe
            self._buckets[key] = (tokens, now)
        return allowed, tokens, now


class RateLimits:
    """The limits of one app: flask-limiter's storage, the category table and the Redis fallback."""

    def __init__(self, limiter, limits: dict[str, tuple[int, int]], storage_uri: str):
        self.limiter = limiter
        self.limits = limits
        self.storage_uri = storage_uri
        self._shared = storage_uri.startswith(("redis", "rediss", "unix"))
        self._script = None
        self._local = MemoryBuckets()        # memory:// storage, or the fallback while Redis is down
        self._fallback = False
        self._fallback_since: float | None = None
        self._next_probe = 0.0
        self._failures = 0
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._lease_params: dict[str, tuple[int, float]] = {}
        self._reconciler_pid: int | None = None

    # ------------------------------------------------------------------ counting
    def hit(self, category: str, who: str, cost: int = 1) -> Decision:
        """Take `cost` tokens from `who`'s bucket in `category` and decide.

        One storage round trip for a small bucket; a large one decides in memory from a leased
        slice, with one round trip per slice. `who` is an opaque bucket owner.
        """
        capacity, window = self.limits[category]
        per_second = capacity / window
        key = f"{KEY_PREFIX}:{category}:{who}"
        if capacity >= LEASE_MIN_CAPACITY and self._shared and not self._fallback:
            allowed, tokens, now = self._take_leased(key, capacity, per_second, cost)
        else:
            allowed, tokens, now, _ = self._take(key, capacity, per_second, cost)
        # a lease's slice counts as left, but never past the bucket's capacity (concurrent slices add up)
        tokens = min(tokens, float(capacity))
        reset_at = math.ceil(now + (capacity - tokens) / per_second)
        retry_after = 0 if allowed else max(1, math.ceil((cost - tokens) / per_second))
        return Decision(category, capacity, int(tokens), reset_at, allowed, retry_after)

    def _take_leased(self, key: str, capacity: int, per_second: float, cost: int) -> tuple[bool, float, float]:
        clock = time.monotonic()
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and clock < lease.expires and lease.left >= cost:
                lease.left -= cost
                return True, lease.shared + lease.left, time.time()
            giveback = 0.0
            if lease is not None:
                giveback = lease.left
                del self._leases[key]
        slice_ = max(1, int(capacity * LEASE_FRACTION))
        allowed, tokens, now, taken = self._take(key, capacity, per_second, cost, giveback=giveback,
                                                 want=cost + slice_)
        if allowed and taken > cost:
            with self._lock:
                held = self._leases.get(key)
                if held is not None:        # another request took a slice meanwhile: keep both
                    held.left += taken - cost
                else:
                    self._leases[key] = _Lease(taken - cost, tokens, time.monotonic() + LEASE_SECONDS)
            self._start_reconciler()
            tokens += taken - cost
        return allowed, tokens, now

    def reconcile(self) -> int:
        """Give the unused tokens of expired leases back to the shared buckets; returns how many leases."""
        clock = time.monotonic()
        with self._lock:
            expired = [(key, lease) for key, lease in self._leases.items() if lease.expires <= clock]
            for key, _ in expired:
                del self._leases[key]
        for key, lease in expired:
            params = self._lease_params.pop(key, None)
            if lease.left > 0 and params is not None:
                self._take(key, params[0], params[1], 0, giveback=lease.left, want=0)
        return len(expired)

    def _start_reconciler(self) -> None:
        if self._reconciler_pid == os.getpid():
            return
        with self._lock:
            if self._reconciler_pid == os.getpid():
                return
            self._reconciler_pid = os.getpid()
        # a thread (a greenlet under gunicorn's gevent worker); it only talks to Redis
        threading.Thread(target=self._reconcile_forever, name="scaivault-rate-leases", daemon=True).start()

    def _reconcile_forever(self) -> None:
        while True:
            time.sleep(LEASE_SECONDS)
            try:
                self.reconcile()
            except Exception as exc:   # never let the reconciler die; leases simply expire unused
                log.warning("rate-limit lease reconciliation failed", extra={"error": type(exc).__name__})

    def _take(self, key: str, capacity: int, per_second: float, cost: int, *, giveback: float = 0.0,
              want: int | None = None) -> tuple[bool, float, float, float]:
        if not self._shared or (self._fallback and not self._probe_due()):
            return (*self._local.take(key, capacity, per_second, cost), float(cost))
        try:
            started = time.perf_counter()
            allowed, tokens, now, taken = self._bucket_script()(
                keys=[key], args=[capacity, repr(per_second), cost, repr(giveback), want if want is not None else cost])
            _observe_redis(time.perf_counter() - started)
        except Exception as exc:  # any storage failure: keep serving, count locally
            self._enter_fallback(exc)
            return (*self._local.take(key, capacity, per_second, cost), float(cost))
        if self._fallback:
            self._leave_fallback()
        if want is not None and want > cost:
            if len(self._lease_params) > MemoryBuckets.MAX_BUCKETS:
                self._lease_params.clear()     # a lease without its parameters simply lapses
            self._lease_params[key] = (capacity, per_second)
        return bool(int(allowed)), float(tokens), float(now), float(taken)

    def prepare(self) -> None:
        """What the first leased request of a process would do before its own work (a warming
        worker calls it): load the bucket script into Redis, start the lease reconciler."""
        if self._shared:
            script = self._bucket_script()
            script.registered_client.script_load(script.script)
            self._start_reconciler()

    def _bucket_script(self):
        if self._script is None:
            # flask-limiter's storage owns the Redis connection (URL, timeouts, pool)
            self._script = self.limiter.storage.get_connection().register_script(TOKEN_BUCKET_LUA)
        return self._script

    def _probe_due(self) -> bool:
        with self._lock:
            if time.monotonic() < self._next_probe:
                return False
            # only one request probes; the others keep counting in memory meanwhile
            self._next_probe = time.monotonic() + RETRY_BACKOFF_SECONDS[min(self._failures, len(RETRY_BACKOFF_SECONDS) - 1)]
            return True

    def _enter_fallback(self, exc: Exception) -> None:
        with self._lock:
            self._failures += 1
            self._next_probe = time.monotonic() + RETRY_BACKOFF_SECONDS[min(self._failures - 1, len(RETRY_BACKOFF_SECONDS) - 1)]
            if not self._fallback:
                self._fallback = True
                self._fallback_since = time.time()
                log.warning("rate-limit storage unreachable; counting limits in memory on this instance",
                            extra={"error": type(exc).__name__})
                _set_fallback_gauge(1)

    def _leave_fallback(self) -> None:
        with self._lock:
            if not self._fallback:
                return
            self._fallback = False
            self._fallback_since = None
            self._failures = 0
            log.warning("rate-limit storage reachable again; limits are shared across instances again")
            _set_fallback_gauge(0)

    def status(self) -> dict[str, Any]:
        """For readiness details: which storage counts the limits right now."""
        backend = self.storage_uri.split("://", 1)[0]
        if self._fallback:
            return {"status": "degraded", "storage": "memory", "configured_storage": backend,
                    "fallback_since": int(self._fallback_since or 0),
                    "detail": "rate-limit storage unreachable; limits are per instance"}
        return {"status": "ok", "storage": backend}


# ---------------------------------------------------------------------- Flask side

def init_rate_limits(app, settings) -> RateLimits:
    """Attach a Limiter (storage only: no default limits) and the category table to `app`."""
    from flask_limiter import Limiter

    limiter_uri = None
    if settings.redis_url:
        storage_uri = settings.redis_url
        runtime = app.extensions.get("scaivault")
        if storage_uri.startswith("redis+cluster://"):
            shared = patches.limits_shared_cluster_storage() if runtime is not None else None
            if shared:
                # one set of cluster pools per process: limits' cluster storage over the runtime's client
                limiter_uri, options = shared + "://", {"client": runtime.redis}
            else:
                limiter_uri = storage_uri
                options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
        elif storage_uri.startswith("redis+sentinel://"):
            # limits takes the service name as the whole path: the database goes in the options
            from .redis_store import parse_sentinel_url

            _, service, db, _ = parse_sentinel_url(storage_uri)
            storage_uri = storage_uri.split("/", 3)[0] + "//" + storage_uri.split("/", 3)[2] + "/" + service
            options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                       "db": db}
        elif runtime is not None:
            # one Redis pool per process: flask-limiter's storage rides the runtime's
            options = {"connection_pool": runtime.redis.connection_pool}
        else:
            options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    else:
        storage_uri, options = "memory://", {}
    try:
        check_overrides(settings.rate_limits)
    except ValueError as exc:
        from .config import ConfigError

        raise ConfigError("RATE_LIMITS", str(exc)) from None
    limiter = Limiter(_request_key, app=app, storage_uri=limiter_uri or storage_uri, storage_options=options,
                      headers_enabled=False,
                      default_limits=[])
    patches.flask_limiter_without_request_hooks(app, limiter)
    limits = RateLimits(limiter, effective_limits(settings.rate_limits), storage_uri)
    app.extensions["scaivault_rate_limits"] = limits
    app.after_request(_add_headers)
    return limits


def _request_key() -> str:
    """Who a bucket belongs to: the identity's sub and tenant, or the client IP before authentication."""
    from .api.http import current_request

    identity = g.get("identity")
    if identity is not None:
        return identity.principal
    return "ip:" + (current_request().remote_addr or "unknown")


def enforce(category: str, cost: int = 1) -> None:
    """Take `cost` units from the caller's bucket for `category`, or raise rate_limited."""
    limits: RateLimits | None = current_app.extensions.get("scaivault_rate_limits")
    if limits is None:
        return
    state = g._get_current_object()
    identity = state.get("identity")
    decision = limits.hit(category, identity.principal if identity is not None else _request_key(), cost)
    state.rate_limit = decision
    _observe_fill(category, decision)
    if not decision.allowed:
        _count_hit(category)
        raise ScaiVaultError(
            "rate_limited", f"rate limit of {decision.limit} requests per {limits.limits[category][1]}s "
                            f"exceeded for {category}; retry after {decision.retry_after}s",
            details={"category": category, "limit": decision.limit, "window_seconds": limits.limits[category][1],
                     "retry_after": decision.retry_after},
            headers={"Retry-After": str(decision.retry_after)})


def _add_headers(response):
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        response.headers["X-RateLimit-Limit"] = str(decision.limit)
        response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
        response.headers["X-RateLimit-Reset"] = str(decision.reset_at)
    return response


def status(app) -> dict[str, Any]:
    limits: RateLimits | None = app.extensions.get("scaivault_rate_limits")
    return limits.status() if limits else {"status": "ok", "storage": "none"}


def _observe_fill(category: str, decision: Decision) -> None:
    from . import metrics

    metrics.labelled(metrics.RATE_LIMIT_BUCKET_FILL, category).set(decision.remaining / max(decision.limit, 1))


def _count_hit(category: str) -> None:
    from . import metrics

    metrics.labelled(metrics.RATE_LIMIT_HITS, category).inc()


def _set_fallback_gauge(value: int) -> None:
    from . import metrics

    metrics.RATE_LIMITER_FALLBACK.set(value)


def _observe_redis(seconds: float) -> None:
    from . import metrics

    metrics.REDIS_LATENCY.observe(seconds)
