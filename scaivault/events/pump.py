"""Per-process event machinery: a LISTEN connection and the dispatch/delivery loop.

The listener holds one dedicated PostgreSQL connection LISTENing on the outbox, delivery and
subscription channels; a NOTIFY (sent on commit by the writer) wakes the pump at once and
wakes long-polls of the named subscription. Every second the pump also sweeps on its own,
so a lost notification (listener reconnecting, another instance's NOTIFY missed) delays
work by at most a second and loses nothing: the outbox and delivery rows are the queue.

Run stand-alone (a worker process without HTTP):  python -m scaivault.events.pump
"""
from __future__ import annotations

import logging
import select
import threading
import time
from collections import defaultdict

from .delivery import DELIVERIES_CHANNEL, DeliveryPolicy, DeliveryWorker
from .dispatcher import SUBSCRIPTIONS_CHANNEL, dispatch
from .outbox import CHANNEL

log = logging.getLogger("scaivault.events")

SWEEP_SECONDS = 1.0


class Listener:
    """LISTEN on the event channels; wakes the pump and subscription waiters."""

    def __init__(self, settings):
        self.settings = settings
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self.on_events = threading.Event()        # the outbox has new rows
        self.on_deliveries = threading.Event()    # deliveries were queued
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Listener":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="scaivault-listen", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def waiter(self, subscription_id: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiters[subscription_id].add(event)
        return event

    def forget(self, subscription_id: str, event: threading.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(subscription_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[subscription_id]

    def _wake(self, subscription_id: str) -> None:
        with self._lock:
            for event in self._waiters.get(subscription_id, ()):
                event.set()

    def _run(self) -> None:
        from ..db import connect

        backoff = 0.5
        while not self._stop.is_set():
            conn = None
            try:
                conn = connect(self.settings.database_url, timeout=30.0, application_name="scaivault-listen")
                for channel in (CHANNEL, DELIVERIES_CHANNEL, SUBSCRIPTIONS_CHANNEL):
                    conn.run(f"LISTEN {channel}")
                self.connected.set()
                backoff = 0.5
                while not self._stop.is_set():
                    readable, _, _ = select.select([conn._usock], [], [], SWEEP_SECONDS)
                    if readable:
                        conn.run("SELECT 1")          # reads the pending NotificationResponse messages
                    while conn.notifications:
                        _pid, channel, payload = conn.notifications.popleft()
                        if channel == SUBSCRIPTIONS_CHANNEL:
                            self._wake(payload)
                        elif channel == DELIVERIES_CHANNEL:
                            self.on_deliveries.set()
                        else:
                            self.on_events.set()
            except Exception as exc:     # reconnect with back-off; the 1 s sweeps keep work moving meanwhile
                self.connected.clear()
                log.warning("event listener lost its connection", extra={"error": type(exc).__name__})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass


class EventPump:
    """Dispatches the outbox and performs due deliveries, woken by the listener or every second.

    Two loops, so that slow receivers never hold up fan-out (and polling subscribers with it).
    """

    def __init__(self, runtime, policy: DeliveryPolicy | None = None, listener: Listener | None = None):
        from ..services.subscriptions import subscription_gate

        self.runtime = runtime
        self.listener = listener or Listener(runtime.settings)
        self.worker = DeliveryWorker(runtime.db, runtime.keyring, runtime.settings, policy,
                                     subscription_gate=subscription_gate(runtime))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "EventPump":
        self.listener.start()
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._loop, args=(self.listener.on_events, self.dispatch_all),
                                 name="scaivault-dispatch", daemon=True),
                threading.Thread(target=self._loop, args=(self.listener.on_deliveries, self.deliver_due),
                                 name="scaivault-deliver", daemon=True),
            threading.Thread(target=self._relay, name="scaivault-slots", daemon=True)]
            for thread in self._threads:
                thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.listener.stop()
        self.listener.on_events.set()
        self.listener.on_deliveries.set()
        self.worker.close()

    def dispatch_all(self) -> int:
        done = 0
        for _ in range(100):
            n = dispatch(self.runtime.db)
            done += n
            if n == 0:
                break
        return done

    def deliver_due(self) -> int:
        """Start due deliveries in the free slots (never waits for a receiver)."""
        done = 0
        for _ in range(100):
            n = self.worker.run_once(wait=False)
            done += n
            if n == 0:
                break
        return done

    def run_once(self) -> int:
        """Dispatch everything pending, then deliver what is due; returns the work done."""
        done = 0
        for _ in range(100):
            n = dispatch(self.runtime.db)
            n += self.worker.run_once()
            done += n
            if n == 0:
                break
        return done

    def _relay(self) -> None:
        """A finished attempt frees a slot: wake the delivery loop so queued work starts at once."""
        while not self._stop.is_set():
            if self.worker.idle.wait(SWEEP_SECONDS):
                self.worker.idle.clear()
                self.listener.on_deliveries.set()

    def _loop(self, wake: threading.Event, work) -> None:
        while not self._stop.is_set():
            wake.wait(SWEEP_SECONDS)
            wake.clear()
            if self._stop.is_set():
                return
            try:
                work()
            except Exception as exc:    # the database may be away; the next sweep retries
                log.warning("event pump pass failed", extra={"error": type(exc).__name__})
                self._stop.wait(SWEEP_SECONDS)


def pump_for(runtime) -> EventPump:
    """The process's pump, started on first use."""
    pump = runtime.__dict__.get("event_pump")
    if pump is None:
        pump = runtime.__dict__["event_pump"] = EventPump(runtime).start()
    return pump


def listener_for(runtime) -> Listener:
    return pump_for(runtime).listener


def main() -> int:
    import os

    from ..config import load_settings
    from ..logging_setup import configure_logging
    from ..runtime import Runtime

    settings = load_settings(os.environ)
    configure_logging(settings.log_level, settings.log_format)
    pump = pump_for(Runtime(settings))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pump.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
