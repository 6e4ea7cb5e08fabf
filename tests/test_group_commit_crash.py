"""kill -9 of a served worker in the middle of read and write batches (issue 10): afterwards every
acknowledged write is readable at its acknowledged version, every value that left the process has
its audit entry, and the tenant's hash chain verifies."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from scaivault.audit.chain import verify_chain
from scaivault.config import DatabaseURL
from scaivault.db import Database

from tests.foundation_support import ServedInstance, get_ready
from tests.secrets_support import ADMIN_SCOPES, HIGH_RATE_LIMITS, new_tenant

pytestmark = pytest.mark.slow

READERS, WRITERS, PATHS = 16, 8, 12


def worker_pids(master: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{master}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(pid) for pid in text]
    return children


def wait_for_new_worker(master: int, dead: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = [pid for pid in worker_pids(master) if pid != dead]
        if live:
            return live[0]
        time.sleep(0.05)
    raise AssertionError("gunicorn did not replace the killed worker")


def test_kill_9_mid_batch_loses_no_acknowledged_write_and_no_audit_entry(base_env, scaikey):
    tenant = new_tenant()
    token = scaikey.mint(sub="usr_crash", email=f"crash@{tenant}.example", tenant_id=tenant, partner_id="ptn_test",
                         scopes=ADMIN_SCOPES, role="tenant_admin")
    headers = {"Authorization": f"Bearer {token}"}
    instance = ServedInstance({**base_env, "WEB_CONCURRENCY": "1", "RATE_LIMITS": HIGH_RATE_LIMITS,
                               "SECRET_MAX_VERSIONS_DEFAULT": "1000", "LOG_LEVEL": "error"}).start()
    db = Database(DatabaseURL.parse("DATABASE_URL", base_env["DATABASE_URL"]), pool_size=2)
    try:
        assert get_ready(instance.url).status_code == 200
        for i in range(PATHS):
            assert requests.put(f"{instance.url}/v1/secrets/crash/s{i}", headers=headers,
                                json={"data": {"w": "seed"}}, timeout=10).status_code in (200, 201)
        stop = threading.Event()
        reads: list[tuple[str, int, dict | None]] = []
        writes: list[tuple[str, int, int | None, str]] = []
        lock = threading.Lock()

        def reader(n: int) -> None:
            session, k = requests.Session(), 0
            while not stop.is_set():
                k += 1
                try:
                    r = session.get(f"{instance.url}/v1/secrets/crash/s{k % PATHS}", headers=headers, timeout=10)
                    # the server's own request id names the audit entry
                    outcome = (r.headers.get("X-Request-ID"), r.status_code, r.json() if r.status_code == 200 else None)
                except requests.RequestException:
                    outcome, session = (None, 0, None), requests.Session()
                with lock:
                    reads.append(outcome)

        def writer(n: int) -> None:
            session, k = requests.Session(), 0
            while not stop.is_set():
                k += 1
                value, path = f"w{n}-{k}", f"crash/s{(n + k) % PATHS}"
                try:
                    r = session.put(f"{instance.url}/v1/secrets/{path}", headers=headers,
                                    json={"data": {"w": value}}, timeout=10)
                    version = r.json().get("version") if r.status_code in (200, 201) else None
                    outcome = (path, r.status_code, version, value)
                except requests.RequestException:
                    outcome, session = (path, 0, None, value), requests.Session()
                with lock:
                    writes.append(outcome)

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
        threads += [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for t in threads:
            t.start()
        worker = wait_for_new_worker(instance.proc.pid, -1)
        for _ in range(2):                        # two kills, each under full read and write load
            time.sleep(1.5)
            os.kill(worker, signal.SIGKILL)
            worker = wait_for_new_worker(instance.proc.pid, worker)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(30)

        served_reads = [(rid, body) for rid, status, body in reads if status == 200]
        acknowledged = [(p, v, value) for p, status, v, value in writes if status in (200, 201)]
        assert len(served_reads) > 50 and len(acknowledged) > 10
        assert any(status == 0 for _, status, _ in reads), "the kills cut no request: nothing was tested"
        for path, version, value in acknowledged:
            r = requests.get(f"{instance.url}/v1/secrets/{path}?version={version}", headers=headers, timeout=10)
            assert r.status_code == 200 and r.json()["data"] == {"w": value}, (path, version, value, r.text)
        audited = {row["request_id"]: row["extra_data"]["version"] for row in db.query(
            "SELECT request_id, extra_data FROM audit_log WHERE tenant_id = :t AND action = 'read' AND success",
            t=tenant)}
        missing = [rid for rid, _ in served_reads if rid not in audited]
        assert not missing, f"{len(missing)} values left the process without an audit entry"
        assert all(audited[rid] == body["version"] for rid, body in served_reads)
        report = verify_chain(db, tenant)
        assert report.valid, report.first_break
    finally:
        instance.stop()
        db.close()
