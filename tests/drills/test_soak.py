"""The soak: a paced load (about half of what this machine serves) for SOAK_SECONDS (30 minutes by
default), each worker's memory sampled; it must stay flat, and the closing checks must hold."""
from __future__ import annotations

import os
import time

import pytest

from tests.drills.harness import Instance, Load, check_drill

TENANT = "tnt_soak"


@pytest.mark.drill_long
def test_soak_at_half_capacity_keeps_each_workers_memory_flat(base_env, scaikey):
    import psutil

    seconds = float(os.environ.get("SOAK_SECONDS", "1800"))
    instance = Instance({**base_env}, workers=2).start()
    try:
        token = scaikey.mint(sub="usr_soak", email="soak@soak.example", tenant_id=TENANT, partner_id="ptn_soak",
                             scopes=("secrets:read", "secrets:write"), role="tenant_admin")
        # paced: 4 writers and 8 readers, each at most ~50 requests/s
        load = Load(instance.url, token, writers=4, readers=8, paths_per_writer=25, pace=0.02).start()
        samples: dict[int, list[float]] = {}
        started = time.monotonic()
        interval = max(5.0, seconds / 60)
        while time.monotonic() - started < seconds:
            time.sleep(interval)
            for pid in instance.worker_pids():
                try:
                    samples.setdefault(pid, []).append(psutil.Process(pid).memory_info().rss / 2**20)
                except psutil.NoSuchProcess:
                    pass
        record = load.stop()
        result = check_drill(instance.url, token, record, allowed_errors=set(), fault_ended=None,
                             database_url=base_env["DATABASE_URL"], tenant_id=TENANT)
        lines = []
        for pid, rss in samples.items():
            settled = rss[len(rss) // 5:]             # after the first fifth (caches filled)
            growth = settled[-1] - settled[0]
            lines.append(f"worker {pid}: {settled[0]:.1f} -> {settled[-1]:.1f} MiB ({growth:+.1f})")
            assert growth < max(20.0, 0.15 * settled[0]), lines
        rate = result.requests / seconds
        print(f"\nSOAK seconds={seconds:.0f} requests={result.requests} rate={rate:.0f}/s {'; '.join(lines)}")
    finally:
        instance.cleanup()
