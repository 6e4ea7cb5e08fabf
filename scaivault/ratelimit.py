"""Rate limits per (identity, category); see spec/10 section 8.

CATEGORIES is the one list of category keys: every endpoint names one of them (or None for
health and metrics probes), and RATE_LIMITS may override any of them by the same key.

Each app gets a flask-limiter `Limiter` whose storage (Redis at REDIS_URL, `memory://` in dev
mode without Redis) holds the counters, so limits hold across instances. `enforce()` spends one
storage round trip per request: an atomic INCR+EXPIRE on a counter of a clock-aligned window,
from which limit, remaining and reset follow without a second call. When Redis fails, the
process counts in memory (per instance), logs a warning once, shows it in health and metrics,
and probes Redis again with a back-off.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

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
    limit: int
    remaining: int
    reset_at: int          # Unix time the current window ends
    allowed: bool

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_at - int(time.time()))


class RateLimits:
    """The limits of one app: flask-limiter's storage, the category table and the Redis fallback."""

    def __init__(self, limiter, limits: dict[str, tuple[int, int]], storage_uri: str):
        self.limiter = limiter
        self.limits = limits
        self.storage_uri = storage_uri
        self._fallback = None
        self._fallback_since: float | None = None
        self._next_probe = 0.0
        self._failures = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ counting
    def hit(self, category: str, who: str, cost: int = 1) -> Decision:
        """Count `cost` units of `who` in `category` and decide; one storage round trip."""
        rate, window = self.limits[category]
        now = time.time()
        window_index = int(now // window)
        reset_at = (window_index + 1) * window
        key = f"{KEY_PREFIX}:{category}:{who}:{window}:{window_index}"
        count = self._incr(key, window, cost)
        return Decision(category, rate, max(0, rate - count), int(reset_at), count <= rate)

    def _incr(self, key: str, window: int, cost: int) -> int:
        if self._fallback is not None and not self._probe_due():
            return self._fallback.incr(key, window, amount=cost)
        try:
            started = time.perf_counter()
            count = self.limiter.storage.incr(key, window, amount=cost)
            _observe_redis(time.perf_counter() - started)
        except Exception as exc:  # any storage failure: keep serving, count locally
            self._enter_fallback(exc)
            return self._fallback.incr(key, window, amount=cost)
        if self._fallback is not None:
            self._leave_fallback()
        return count

    def _probe_due(self) -> bool:
        with self._lock:
            if time.monotonic() < self._next_probe:
                return False
            # only one request probes; the others keep counting in memory meanwhile
            self._next_probe = time.monotonic() + RETRY_BACKOFF_SECONDS[min(self._failures, len(RETRY_BACKOFF_SECONDS) - 1)]
            return True

    def _enter_fallback(self, exc: Exception) -> None:
        from limits.storage import MemoryStorage

        with self._lock:
            self._failures += 1
            self._next_probe = time.monotonic() + RETRY_BACKOFF_SECONDS[min(self._failures - 1, len(RETRY_BACKOFF_SECONDS) - 1)]
            if self._fallback is None:
                self._fallback = MemoryStorage()
                self._fallback_since = time.time()
                log.warning("rate-limit storage unreachable; counting limits in memory on this instance",
                            extra={"error": type(exc).__name__})
                _set_fallback_gauge(1)

    def _leave_fallback(self) -> None:
        with self._lock:
            if self._fallback is None:
                return
            self._fallback = None
            self._fallback_since = None
            self._failures = 0
            log.warning("rate-limit storage reachable again; limits are shared across instances again")
            _set_fallback_gauge(0)

    def status(self) -> dict[str, Any]:
        """For readiness details: which storage counts the limits right now."""
        backend = self.storage_uri.split("://", 1)[0]
        if self._fallback is not None:
            return {"status": "degraded", "storage": "memory", "configured_storage": backend,
                    "fallback_since": int(self._fallback_since or 0),
                    "detail": "rate-limit storage unreachable; limits are per instance"}
        return {"status": "ok", "storage": backend}


# ---------------------------------------------------------------------- Flask side

def init_rate_limits(app, settings) -> RateLimits:
    """Attach a Limiter (storage only: no default limits) and the category table to `app`."""
    from flask_limiter import Limiter

    if settings.redis_url:
        storage_uri = settings.redis_url
        options = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    else:
        storage_uri, options = "memory://", {}
    try:
        check_overrides(settings.rate_limits)
    except ValueError as exc:
        from .config import ConfigError

        raise ConfigError("RATE_LIMITS", str(exc)) from None
    limiter = Limiter(_request_key, app=app, storage_uri=storage_uri, storage_options=options,
                      strategy="fixed-window", headers_enabled=False,
                      default_limits=[])
    limits = RateLimits(limiter, effective_limits(settings.rate_limits), storage_uri)
    app.extensions["scaivault_rate_limits"] = limits
    app.after_request(_add_headers)
    return limits


def _request_key() -> str:
    """Who a bucket belongs to: the identity, or the client IP before authentication."""
    from flask import g, request

    identity = g.get("identity")
    if identity is not None:
        return identity.identity_id
    return "ip:" + (request.remote_addr or "unknown")


def enforce(category: str, cost: int = 1) -> None:
    """Take `cost` units from the caller's bucket for `category`, or raise rate_limited."""
    from flask import current_app, g

    from .errors import ScaiVaultError

    limits: RateLimits | None = current_app.extensions.get("scaivault_rate_limits")
    if limits is None:
        return
    decision = limits.hit(category, _request_key(), cost)
    g.rate_limit = decision
    if not decision.allowed:
        _count_hit(category)
        raise ScaiVaultError(
            "rate_limited", f"rate limit of {decision.limit} requests per {limits.limits[category][1]}s "
                            f"exceeded for {category}; retry after {decision.retry_after}s",
            details={"category": category, "limit": decision.limit, "window_seconds": limits.limits[category][1],
                     "retry_after": decision.retry_after},
            headers={"Retry-After": str(decision.retry_after)})


def _add_headers(response):
    from flask import g

    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        response.headers["X-RateLimit-Limit"] = str(decision.limit)
        response.headers["X-RateLimit-Remaining"] = str(decision.remaining)
        response.headers["X-RateLimit-Reset"] = str(decision.reset_at)
    return response


def status(app) -> dict[str, Any]:
    limits: RateLimits | None = app.extensions.get("scaivault_rate_limits")
    return limits.status() if limits else {"status": "ok", "storage": "none"}


def _count_hit(category: str) -> None:
    from . import metrics

    metrics.RATE_LIMIT_HITS.labels(category=category).inc()


def _set_fallback_gauge(value: int) -> None:
    from . import metrics

    metrics.RATE_LIMITER_FALLBACK.set(value)


def _observe_redis(seconds: float) -> None:
    from . import metrics

    metrics.REDIS_LATENCY.observe(seconds)
