"""Event pipeline benchmark: secret write -> signed webhook delivery, and -> polling subscriber.

Writers (threads in this process) write secrets through the secret store (the same code a PUT
runs, audit and outbox included, no HTTP in front); a separate process runs the event pump
(`python -m scaivault.events.pump`: LISTEN/NOTIFY-woken dispatcher and delivery worker) and
POSTs signed deliveries to a local HTTP receiver here; a polling subscriber here long-polls
its subscription (woken by NOTIFY) and acks. For each event: delay = arrival - the moment the
write returned (committed). Creates and drops its own database.

Usage: python bench/lifecycle_events.py [--events 2000] [--writers 4]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pg8000.native

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaivault.config import DatabaseURL, load_settings  # noqa: E402
from scaivault.events.pump import Listener  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from scaivault.runtime import Runtime  # noqa: E402
from scaivault.services.rotation import system_audit  # noqa: E402
from scaivault.services.secret_policies import TenantScope  # noqa: E402
from scaivault.services.secrets import SecretOwner, WriteRequest  # noqa: E402
from scaivault.services.subscriptions import SubscriptionService  # noqa: E402
from scaivault.services.webhooks import WebhookService  # noqa: E402
from scaivault.auth.identity import Identity  # noqa: E402

TENANT, PARTNER = "tnt_evbench", "ptn_evbench"


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def summary(name: str, delays: dict, commits: dict, expected: int) -> dict:
    got = [delays[k] - commits[k] for k in delays if k in commits]
    first = min(commits.values())
    last = max(delays.values()) if delays else first
    return {"path": name, "events": len(got), "expected": expected,
            "events_per_s": round(len(got) / (last - first), 1) if got else 0,
            "p50_ms": round(percentile(got, 0.50) * 1000, 1) if got else None,
            "p99_ms": round(percentile(got, 0.99) * 1000, 1) if got else None,
            "mean_ms": round(statistics.mean(got) * 1000, 1) if got else None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()

    name = "evbench_" + secrets.token_hex(4)
    admin = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=5432, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}?sslmode=disable"
    keydir = tempfile.mkdtemp()
    env = {"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/15", "SCAIKEY_URL": "http://127.0.0.1:9",
           "BASE_URL": "http://127.0.0.1:1", "KMS_PROVIDER": "local", "KMS_LOCAL_KEY_FILE": f"{keydir}/root.key",
           "LOG_LEVEL": "error", "LOG_FORMAT": "text", "WEBHOOK_ALLOW_HTTP": "true",
           "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "DB_POOL_SIZE": "16"}
    pump = None
    try:
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        rt = Runtime(load_settings(env))
        rt.keyring.ensure_root()
        scope = TenantScope(TENANT, PARTNER)
        owner = SecretOwner(PARTNER, TENANT)
        audit = system_audit(TENANT, PARTNER, "bench")

        webhook_arrivals: dict = {}
        lock = threading.Lock()

        class Receiver(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with lock:
                    webhook_arrivals.setdefault((body["path"], body["data"].get("version") or body["data"]["new_version"]), now)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        WebhookService(rt.db, rt.keyring, rt.settings).create(scope, {
            "name": "bench", "url": f"http://127.0.0.1:{server.server_address[1]}/hook", "secret": "b" * 40,
            "events": ["secret.created", "secret.updated"]}, "system:bench", audit)
        owner_identity = Identity(identity_id="sa:bench", identity_type="service_account", subject="sa:bench",
                                  tenant_id=TENANT, partner_id=PARTNER, scopes=frozenset())
        listener = Listener(rt.settings).start()
        subs = SubscriptionService(rt.db, rt.keyring, rt.settings, listener_factory=lambda: listener)
        sub = subs.create(scope, owner_identity, {"name": "bench", "paths": ["bench/**"],
                                                  "events": ["secret.created", "secret.updated"],
                                                  "delivery": {"type": "polling", "buffer_size": 100000}}, audit)
        row = subs.get_owned(scope, sub["id"], owner_identity, admin=False)
        poll_arrivals: dict = {}
        stop = threading.Event()

        def subscriber():
            while not stop.is_set():
                try:
                    got = subs.poll(scope, row, timeout=5, since_event_id=None, max_events=1000,
                                    can_read=lambda p: True, audit=audit)
                except Exception:
                    if stop.is_set():
                        return
                    raise
                now = time.monotonic()
                for e in got["events"]:
                    poll_arrivals.setdefault((e["path"], e["data"].get("version") or e["data"]["new_version"]), now)
                if got["events"]:
                    subs.ack(row, [e["event_id"] for e in got["events"]])

        threading.Thread(target=subscriber, daemon=True).start()
        pump = subprocess.Popen([sys.executable, "-m", "scaivault.events.pump"], env={**os.environ, **env},
                                cwd=str(ROOT), stderr=subprocess.DEVNULL)
        listener.connected.wait(10)
        time.sleep(2)
        commits: dict = {}
        per_writer = args.events // args.writers

        def writer(w: int):
            for i in range(per_writer):
                path = f"bench/w{w}/s{i % 50}"
                view, _ = rt.secret_store.write(owner, path, WriteRequest(data={"v": secrets.token_hex(8)}),
                                                "system:bench", audit)
                commits[(path, view["version"])] = time.monotonic()

        started = time.monotonic()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        write_time = time.monotonic() - started
        total = per_writer * args.writers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(webhook_arrivals) < total or len(poll_arrivals) < total):
            time.sleep(0.2)
        stop.set()
        result = {"load_average_1m_at_end": round(os.getloadavg()[0], 2), "writes": total, "writers": args.writers, "writes_per_s": round(total / write_time, 1),
                  "webhook": summary("write -> webhook", webhook_arrivals, commits, total),
                  "polling": summary("write -> polling subscriber", poll_arrivals, commits, total)}
        print(json.dumps(result, indent=2))
        listener.stop()
        rt.close()
        server.shutdown()
    finally:
        if pump is not None:
            pump.terminate()
            pump.wait(10)
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
