"""A small value loaded from the database at most every few seconds per process.

For configuration that hot paths consult on every request (which tenants listen for
`secret.accessed`, which paths are federated): a read costs a memory lookup, one reader at a
time refreshes the value when it is stale, the others go on with the previous one and never
wait, and a failed refresh keeps the last good value.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Generic, TypeVar

log = logging.getLogger("scaivault.snapshot")

T = TypeVar("T")


class PeriodicSnapshot(Generic[T]):
    """`get(*args)` -> the value `load(*args)` returned at most `period` seconds ago."""

    def __init__(self, name: str, load: Callable[..., T], empty: T, period: float = 5.0):
        self.name = name
        self.period = period
        self._load = load
        self._value = empty
        self._loaded = float("-inf")   # monotonic time may be smaller than the period (a fresh boot)
        self._lock = threading.Lock()   # one refresher; readers never block on it

    def get(self, *args: Any) -> T:
        if time.monotonic() - self._loaded > self.period and self._lock.acquire(blocking=False):
            try:
                self._value = self._load(*args)
            except Exception as exc:    # keep the last answer: reads must not fail because of it
                log.warning("snapshot refresh failed", extra={"snapshot": self.name, "error": type(exc).__name__})
            finally:
                self._loaded = time.monotonic()
                self._lock.release()
        return self._value

    def expire(self) -> None:
        """The next get() loads afresh (after a change made by this process)."""
        self._loaded = float("-inf")   # monotonic time may be smaller than the period (a fresh boot)
