"""The served process after faults: stale metrics directories of a master killed with -9 are
removed at the next start, and respawned workers are warm before they accept."""
from __future__ import annotations

import glob
import os
import re
import signal
import tempfile
import time

import pytest
import requests

from tests.drills.harness import Instance


def metrics_dirs_of(pid: int) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"scaivault-metrics-{pid}-*"))


@pytest.mark.slow
def test_a_master_killed_with_9_leaves_a_metrics_directory_that_the_next_start_removes(base_env):
    first = Instance(dict(base_env), workers=1).start()
    try:
        killed_pid = first.master_pid
        assert len(metrics_dirs_of(killed_pid)) == 1
        workers = first.worker_pids()
        first.kill()
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{p}") for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(metrics_dirs_of(killed_pid)) == 1          # nobody could clean up
        second = Instance(dict(base_env), workers=1).start()
        try:
            assert metrics_dirs_of(killed_pid) == []
            assert len(metrics_dirs_of(second.master_pid)) == 1   # its own is in use
            assert requests.get(second.url + "/v1/metrics", timeout=10).status_code in (200, 401, 403)
        finally:
            second.cleanup()
        assert metrics_dirs_of(second.master_pid) == []       # a clean stop removes its own
    finally:
        first.cleanup()


def first_read_after_respawn(base_env, scaikey, warmup: str, reads: int = 15) -> tuple[float, float, str]:
    """(median warm read, first read of a respawned worker, log) in seconds, new connection each."""
    env = {**base_env, "WORKER_WARMUP_TIMEOUT": warmup, "LOG_LEVEL": "info"}
    instance = Instance(env, workers=1).start()
    try:
        token = scaikey.mint(sub="usr_warm", email="warm@t.example", tenant_id="tnt_warm", partner_id="ptn_warm",
                             scopes=("secrets:read", "secrets:write"), role="tenant_admin")
        auth = {"Authorization": f"Bearer {token}", "Connection": "close"}
        url = instance.url + "/v1/secrets/warm/one"
        assert requests.put(url, json={"data": {"v": 1}}, headers=auth, timeout=10).status_code in (200, 201)

        def timed_read() -> float:
            started = time.perf_counter()
            response = requests.get(url, headers=auth, timeout=30)
            assert response.status_code == 200, response.text
            return time.perf_counter() - started

        warm = sorted(timed_read() for _ in range(reads))[reads // 2]
        old = instance.worker_pids()
        warmed = instance.log().count("worker warmed up")
        os.kill(old[0], signal.SIGKILL)
        instance.wait_workers(1, exclude=tuple(old))
        deadline = time.monotonic() + 30          # the new worker has booted (and warmed up, when enabled)
        while warmup != "0s" and instance.log().count("worker warmed up") <= warmed and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5 if warmup != "0s" else 3.0)   # and accepts
        first = timed_read()
        return warm, first, instance.log()
    finally:
        instance.cleanup()


@pytest.mark.slow
def test_a_respawned_worker_warms_every_step_before_it_serves_its_first_read(base_env, scaikey):
    """What the respawned worker did before accepting, not how long its first read took: speed is
    measured by bench/first_read_respawn.py (figures in bench/RESULTS.md), never by a timed test."""
    _warm, _first, log = first_read_after_respawn(base_env, scaikey, "15s")
    warmed = [line for line in log.splitlines() if "worker warmed up" in line]
    assert len(warmed) >= 2, log[-2000:]           # the first worker and its replacement
    replacement = warmed[-1]
    assert "failed_steps=[]" in replacement, replacement
    for step in ("database", "jwks", "keys", "snapshots", "policies", "identities", "routes", "metrics"):
        assert f"'{step}'" in replacement or f"{step}=" in replacement, (step, replacement)
    # the reader the killed worker served is among the principals whose identity rows it read
    warmed_principals = re.search(r"identities=\{'hinted': (\d+), 'principals': (\d+)\}", replacement)
    assert warmed_principals and int(warmed_principals.group(2)) >= 1, replacement
