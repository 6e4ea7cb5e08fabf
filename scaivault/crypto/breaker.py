"""Failing fast while a KMS key is down: a circuit breaker per key and single-flight calls.

A KMS that stalls must cost a request at most one bounded call (KMS_TIMEOUT x KMS_RETRIES),
never a place in a queue of such calls:

- `SingleFlight`: concurrent callers needing the same thing (one partner key, the root
  record) share one call; when it ends, every waiter gets its result or its error at once.
- `CircuitBreaker`: after a call finds the key unreachable, calls answer `kms_unavailable`
  at once, without touching the network, until a background probe reaches the key again.
  Opening logs a warning; closing logs that the key answers again.

Only unreachability opens the breaker. A KMS that answers with a refusal (permission denied,
disabled key, wrong key) is up: that error passes through and nothing is opened.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Hashable

from .errors import KmsError, KmsUnavailable

log = logging.getLogger("scaivault.crypto")

PROBE_INTERVAL_SECONDS = 2.0


class CircuitBreaker:
    """Open while one KMS key is known unreachable; `probe` (a cheap real call) closes it."""

    def __init__(self, key_ref: str, probe: Callable[[], None], *, probe_interval: float = PROBE_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.key_ref = key_ref
        self.probe = probe
        self.probe_interval = probe_interval
        self.clock = clock
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._prober: threading.Thread | None = None
        self._closed = threading.Event()      # set: the breaker object is being discarded

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run one KMS call through the breaker; KmsUnavailable at once while it is open."""
        if self.opened_at is not None:
            raise KmsUnavailable(f"the KMS key is unreachable (since {self.clock() - self.opened_at:.0f} s; "
                                 "failing fast while a background probe retries)")
        try:
            result = fn()
        except KmsUnavailable as exc:
            self.trip(exc.message)
            raise
        return result

    def trip(self, reason: str) -> None:
        with self._lock:
            if self.opened_at is not None:
                return
            self.opened_at = self.clock()
            self.last_error = reason
            log.warning("KMS unreachable: circuit breaker open, KMS calls fail fast with kms_unavailable "
                        "until a probe succeeds", extra={"key_ref": self.key_ref, "error": reason,
                                                          "probe_interval_s": self.probe_interval})
            _count_open(self.key_ref)
            self._prober = threading.Thread(target=self._probe_until_closed, name="kms-breaker-probe", daemon=True)
            self._prober.start()

    def reset(self) -> None:
        with self._lock:
            if self.opened_at is None:
                return
            down_for = self.clock() - self.opened_at
            self.opened_at = None
            self.last_error = None
        log.warning("KMS reachable again: circuit breaker closed", extra={"key_ref": self.key_ref,
                                                                          "down_seconds": round(down_for, 1)})

    def _probe_until_closed(self) -> None:
        while self.opened_at is not None and not self._closed.wait(self.probe_interval):
            try:
                self.probe()
            except KmsUnavailable as exc:
                self.last_error = exc.message
                continue
            except KmsError:
                pass                  # the KMS answered (with a refusal): reachable; calls get the refusal
            except Exception as exc:  # the probe could not run (database down): try again later
                self.last_error = type(exc).__name__
                continue
            self.reset()

    def close(self) -> None:
        self._closed.set()


class _Flight:
    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """One call per key at a time; the callers that arrive meanwhile share its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def do(self, key: Hashable, fn: Callable[[], Any], wait_limit: float) -> Any:
        """fn()'s result; a follower waits at most `wait_limit` s (KmsUnavailable after that)."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        assert flight is not None
        if not leader:
            if not flight.done.wait(wait_limit):
                raise KmsUnavailable("the KMS call this request waits for did not finish in time")
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = fn()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()


def _count_open(key_ref: str) -> None:
    try:
        from .. import metrics
    except ImportError:
        return
    counter = getattr(metrics, "KMS_BREAKER_OPENED", None)
    if counter is not None:
        counter.inc()
