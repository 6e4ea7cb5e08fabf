"""Group commit: concurrent requests of one process share one statement and one commit.

A request hands its item to `GroupCommit.submit` and blocks until the batch carrying it has
run (committed, or failed). There is no timer: while a batch is running, new arrivals queue, and
the next leader takes every queued item (up to `max_batch`) as one batch. At low load a batch is a
single item and costs no added latency; under load batches grow by themselves. One batch runs at a
time, unless the newest running batch has taken longer than `stall` (a commit waiting on a slow
disk, a lock): then an arrival starts another, up to `max_inflight` at once, so a stalled statement
holds back one batch, not the process. The first arrival leads; after its batch, leadership passes
to the oldest waiting request, so a request is never kept serving others after its own answer is
ready.

Works with threads and with gevent's patched threading alike (the lock is never held across I/O).
A failing batch of several items is re-run one item at a time, so that each request gets the
outcome it would have had alone and nobody is answered with another request's row.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

from .errors import ServiceUnavailable

MAX_BATCH = 64
MAX_INFLIGHT = 4
# measured (issue 10, bench/RESULTS.md): one batch at a time doubles the reads per batch under load and
# cuts PostgreSQL's CPU per read by half against four at a time; the stall bound keeps the tail of four
STALL_SECONDS = 0.010


class _Ticket:
    __slots__ = ("item", "wake", "finished", "lead", "result", "error")

    def __init__(self, item: Any):
        self.item = item
        self.wake = threading.Event()
        self.finished = False
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Batches items for `run_batch(items) -> results` (one result per item, in order)."""

    def __init__(self, run_batch: Callable[[Sequence[Any]], Sequence[Any]], *,
                 max_batch: int = MAX_BATCH, max_inflight: int = MAX_INFLIGHT, stall: float = STALL_SECONDS,
                 on_batch: Callable[[int], None] | None = None):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.stall = stall
        self.on_batch = on_batch
        self._lock = threading.Lock()
        self._pending: list[_Ticket] = []
        self._leaders = 0
        self._newest_start = 0.0       # when the newest running batch was taken (time.monotonic)

    def _promote(self, ticket: _Ticket | None) -> bool:
        """Make `ticket` the leader of a new batch if one may start now (call with the lock held)."""
        if ticket is None:
            return False
        now = time.monotonic()
        if self._leaders and (self._leaders >= self.max_inflight or now - self._newest_start < self.stall):
            return False
        self._leaders += 1
        self._newest_start = now
        ticket.lead = True
        return True

    def submit(self, item: Any) -> Any:
        """Run `item` in the next batch; returns its result or raises its error."""
        ticket = _Ticket(item)
        with self._lock:
            self._pending.append(ticket)
            self._promote(ticket)
        while True:
            if ticket.lead:
                ticket.lead = False
                self._lead()
            if ticket.finished:
                if ticket.error is not None:
                    raise ticket.error
                return ticket.result
            ticket.wake.wait()
            ticket.wake.clear()

    def _lead(self) -> None:
        with self._lock:
            batch = self._pending[:self.max_batch]
            del self._pending[:len(batch)]
        outcomes: list[tuple[_Ticket, Any, BaseException | None]] = []
        try:
            if batch:
                outcomes = self._execute(batch)
        except BaseException:          # the leader was killed mid-batch: the outcome is unknown
            outcomes = [(t, None, ServiceUnavailable(message="request interrupted; retry it")) for t in batch]
            raise
        finally:
            # hand over before answering: woken in this order, the next leader sends its statement
            # first, and the database works on it while this batch's requests finish their answers
            self._hand_over()
            for ticket, result, error in outcomes:
                self._finish(ticket, result=result, error=error)

    def _hand_over(self) -> None:
        with self._lock:
            self._leaders -= 1
            # the oldest waiting request not already promoted by another finishing leader
            successor = next((t for t in self._pending if not t.lead), None)
            promoted = self._promote(successor)
        if promoted:
            successor.wake.set()

    def _execute(self, batch: list[_Ticket]) -> list[tuple[_Ticket, Any, BaseException | None]]:
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            results = self.run_batch([t.item for t in batch])
        except Exception as exc:
            if len(batch) == 1:
                return [(batch[0], None, exc)]
            outcomes = []
            for ticket in batch:              # each alone: the outcome it would have had by itself
                outcomes += self._execute([ticket])
            return outcomes
        return [(t, r, None) for t, r in zip(batch, results)]

    @staticmethod
    def _finish(ticket: _Ticket, *, result: Any = None, error: BaseException | None = None) -> None:
        ticket.result, ticket.error, ticket.finished = result, error, True
        ticket.wake.set()
