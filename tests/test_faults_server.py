"""The served process after faults: stale metrics directories of a master killed with -9 are
removed at the next start, and respawned workers are warm before they accept."""
from __future__ import annotations

import glob
import os
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
