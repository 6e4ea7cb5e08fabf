"""A cluster-wide version number of everything an authenticated Identity is derived from.

Bumped (Redis INCR) whenever a personal token is revoked, a role changes or the identity
cache changes; every process re-reads it at most every EPOCH_CHECK_SECONDS and drops its
derived identities when it moved, so a revocation takes effect everywhere within a second.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("scaivault.auth.epoch")

EPOCH_KEY = "scaivault:auth:epoch"
EPOCH_CHECK_SECONDS = 0.5
EPOCH_READ_STALL_SECONDS = 2.0   # a Redis read in flight longer than this counts as Redis unreadable


class AuthEpoch:
    def __init__(self, redis_factory):
        self._redis_factory = redis_factory
        self._value: bytes | None = None
        self._checked_at = float("-inf")
        self._reading_since: float | None = None
        self._lock = threading.Lock()           # guards the fields; never held across the Redis read

    def current(self) -> object:
        """The last seen epoch value; re-read from Redis when older than EPOCH_CHECK_SECONDS.

        When Redis cannot be read a fresh object stands in for the value (for one check
        interval, so a dead Redis is not asked on every request): it never equals a previous
        value, so callers re-derive from the database every interval rather than trust a cache
        that a revocation elsewhere could not reach.
        """
        now = time.monotonic()
        if now - self._checked_at < EPOCH_CHECK_SECONDS:
            return self._value
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < EPOCH_CHECK_SECONDS:
                return self._value
            if self._reading_since is not None:
                # another caller is reading Redis: use the last value, unless that read has stalled,
                # in which case no cached identity may be trusted (as when Redis is down)
                if now - self._reading_since > EPOCH_READ_STALL_SECONDS:
                    self._value = object()  # type: ignore[assignment]
                    self._checked_at = now
                return self._value
            self._reading_since = now
        try:
            value = self._redis_factory().get(EPOCH_KEY) or b"0"
        except Exception as exc:  # Redis down: no cached identity may outlive a revocation
            log.warning("auth epoch unreadable", extra={"error": type(exc).__name__})
            value = object()
        with self._lock:
            self._value = value  # type: ignore[assignment]
            self._checked_at = time.monotonic()
            self._reading_since = None
        return value

    def bump(self) -> None:
        """Invalidate derived identities in every process (this one at once)."""
        try:
            self._redis_factory().incr(EPOCH_KEY)
        except Exception as exc:
            log.warning("auth epoch bump failed", extra={"error": type(exc).__name__})
        self._checked_at = float("-inf")
