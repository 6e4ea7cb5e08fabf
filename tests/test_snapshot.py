"""scaivault.snapshot: hot-path configuration read from memory, refreshed by one reader at a time."""
from __future__ import annotations

import threading

from scaivault.snapshot import PeriodicSnapshot


def test_a_reader_never_waits_for_a_refresh_another_reader_is_doing():
    started, release = threading.Event(), threading.Event()
    values = iter([{"a"}, {"b"}])

    def load():
        started.set()
        release.wait(5)
        return next(values)

    snap = PeriodicSnapshot("test", load, frozenset(), period=0.0)
    first = threading.Thread(target=snap.get)
    first.start()
    assert started.wait(5)
    assert snap.get() == frozenset()          # the refresher holds the lock: the old value, at once
    release.set()
    first.join(5)
    assert snap.get() == {"b"}                  # stale again (period 0): this reader refreshes


def test_a_failed_refresh_keeps_the_last_value_and_expire_forces_a_reload():
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("database away")
        return len(calls)

    snap = PeriodicSnapshot("test", load, 0, period=3600)
    assert snap.get() == 1 and snap.get() == 1 and len(calls) == 1   # fresh: no reload
    snap.expire()
    assert snap.get() == 1 and len(calls) == 2                       # the reload failed: last value kept
    snap.expire()
    assert snap.get() == 3
