"""A bounded, time-limited, thread-safe cache of unwrapped keys (process memory only)."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable


class KeyCache:
    """LRU with a per-entry TTL; `clear()` on rotation. Values never leave the process.

    An entry past its TTL is no longer returned by `get`, but is kept for `grace` seconds more
    so that `get_stale` can serve it while the KMS cannot be reached (KMS_CACHE_GRACE).
    """

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic,
                 grace_seconds: float = 0.0):
        self.ttl = ttl_seconds
        self.grace = grace_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            expires, value = item
            now = self.clock()
            if expires <= now:
                if expires + self.grace <= now:
                    del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def get_stale(self, key: Hashable) -> Any | None:
        """The entry even past its TTL, as long as it is within the grace period (else None)."""
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            expires, value = item
            if expires + self.grace <= self.clock():
                del self._entries[key]
                return None
            return value

    def put(self, key: Hashable, value: Any) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def usable_count(self) -> int:
        """Entries still usable: fresh, or past their TTL but within the grace period."""
        with self._lock:
            now = self.clock()
            return sum(1 for expires, _ in self._entries.values() if expires + self.grace > now)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
