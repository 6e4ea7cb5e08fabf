"""One rotation per (secret, cycle) across instances: two processes scanning the same due secrets,
two runners racing on one cycle, and the rotation metrics (spec/30 2.7)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from scaivault.runtime import Runtime
from scaivault.services.rotation import RotationService
from scaivault.services.secrets import SecretOwner
from tests.lifecycle_support import events_of, lifecycle_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant

SCANNER = """
import os, time
from scaivault.config import load_settings
from scaivault.runtime import Runtime
from scaivault.services.rotation import RotationService
rt = Runtime(load_settings(os.environ))
service = RotationService(rt.db, rt.secret_store)
print("ready", flush=True)
input()
rotated = 0
deadline = time.time() + 3
while time.time() < deadline:
    rotated += service.scan()["rotated"]
print(rotated, flush=True)
"""


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(app, scaikey, tenant):
    return lifecycle_admin(Callers(scaikey, app.test_client()), tenant)


def _due_secrets(admin, db, tenant, count: int) -> tuple[str, list[str]]:
    policy = admin.post("/v1/rotation/policies", json={"name": "twice", "interval": "30d", "auto_generate": True}).get_json()
    paths = [f"inst/s{i}" for i in range(count)]
    for path in paths:
        assert admin.put(f"/v1/secrets/{path}", json={"data": {"k": "v"},
                                                       "options": {"rotation_policy_id": policy["id"]}}).status_code == 201
    db.execute("UPDATE rotation_state SET last_rotated_at = now() - interval '31 days' WHERE tenant_id = :t", t=tenant)
    return policy["id"], paths


def test_two_instances_scanning_the_same_due_secrets_rotate_each_once(app, admin, base_env, tenant):
    db = app.extensions["scaivault"].db
    policy_id, paths = _due_secrets(admin, db, tenant, 6)
    env = {**os.environ, **base_env, "RATE_LIMITS": HIGH_RATE_LIMITS}
    procs = [subprocess.Popen([sys.executable, "-c", SCANNER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == b"ready"
        for p in procs:                       # start both scans at the same moment
            p.stdin.write(b"go\n")
            p.stdin.flush()
        totals = [int(p.stdout.readline().strip() or -1) for p in procs]
        for p in procs:
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert sum(totals) >= len(paths)          # other tenants' due secrets of this session may be rotated too
    versions = db.query("SELECT path, current_version FROM secrets WHERE tenant_id = :t ORDER BY path", t=tenant)
    assert [v["current_version"] for v in versions] == [2] * len(paths)
    history = db.query("SELECT secret_path, cycle, status FROM rotation_history WHERE policy_id = :p", p=policy_id)
    assert sorted((h["secret_path"], h["cycle"], h["status"]) for h in history) == [(p, 1, "success") for p in paths]
    assert len(events_of(db, tenant, "secret.rotated")) == len(paths)


def test_two_runners_racing_on_one_cycle_write_one_version(app, admin, base_env, tenant):
    db = app.extensions["scaivault"].db
    policy_id, (path,) = _due_secrets(admin, db, tenant, 1)
    other = Runtime(app.extensions["scaivault"].settings)     # a second instance: its own pool and keyring
    try:
        services = [RotationService(rt.db, rt.secret_store) for rt in (app.extensions["scaivault"], other)]
        policy = db.one("SELECT * FROM rotation_policies WHERE id = :id", id=policy_id)
        row = db.one("SELECT s.*, st.cycle FROM secrets s JOIN rotation_state st ON st.secret_id = s.id "
                     "WHERE s.tenant_id = :t", t=tenant)
        owner = SecretOwner(row["partner_id"], tenant)
        from scaivault.services.rotation import system_audit

        results: list[dict] = []
        barrier = threading.Barrier(2)

        def run(service):
            barrier.wait()
            results.append(service.rotate_secret(policy, owner, dict(row), "schedule", system_audit(tenant, row["partner_id"])))

        threads = [threading.Thread(target=run, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        other.close()
    assert sorted(r["status"] for r in results) == ["skipped", "success"]
    assert db.scalar("SELECT current_version FROM secrets WHERE tenant_id = :t", t=tenant) == 2
    assert len(events_of(db, tenant, "secret.rotated")) == 1


def test_rotation_metrics_and_queue_depths_are_exported(app, admin, tenant):
    db = app.extensions["scaivault"].db
    _due_secrets(admin, db, tenant, 1)
    client = app.test_client()
    text = client.get("/v1/metrics").get_data(as_text=True)
    depth = [line for line in text.splitlines() if line.startswith("scaivault_rotation_queue_depth")]
    assert depth and float(depth[0].split()[-1]) >= 1
    assert any(line.startswith("scaivault_webhook_queue_depth") for line in text.splitlines())
    assert admin.post("/v1/secrets/inst/s0:rotate").get_json()["status"] == "success"
    text = client.get("/v1/metrics").get_data(as_text=True)
    assert any(line.startswith('scaivault_secret_rotations_total{status="success"}') for line in text.splitlines())


def test_the_worker_scheduler_runs_the_rotation_scan_and_starts_the_event_pump(app):
    from scaivault.jobs import lifecycle
    from scaivault.jobs.scheduler import start_scheduler

    runtime = app.extensions["scaivault"]
    scheduler = start_scheduler(runtime)
    try:
        job = scheduler.get_job(lifecycle.JOB_ID)
        assert job is not None and job.trigger.interval.total_seconds() == runtime.settings.rotation_scan_interval
        assert runtime.__dict__["event_pump"].listener.connected.wait(5)
        assert lifecycle.run_scan(runtime)["locked"] is True
    finally:
        scheduler.shutdown(wait=False)
        pump = runtime.__dict__.pop("event_pump", None)
        if pump is not None:
            pump.stop()
