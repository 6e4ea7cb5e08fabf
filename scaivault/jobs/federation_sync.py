"""Scheduled federation syncs: every tick, each sync-mode backend whose next_sync_at passed.

Every worker of every instance ticks; a backend's advisory lock (FederationService.sync) lets
one run at a time, and next_sync_at moves on after each run, so N schedulers make one sync
per backend per interval.
"""
from __future__ import annotations

import logging

from ..errors import ScaiVaultError
from ..services.secrets import SecretOwner

log = logging.getLogger("scaivault.jobs.federation_sync")

JOB_ID = "federation-sync"
TICK_SECONDS = 30


def run_due_syncs(runtime) -> list[dict]:
    results = []
    for due in runtime.federation.due_backends():
        owner = SecretOwner(due["partner_id"], due["tenant_id"])
        try:
            results.append(runtime.federation.sync(owner, due["id"], trigger="schedule"))
        except ScaiVaultError as exc:   # the backend vanished meanwhile, or its row is unusable
            log.warning("federation sync failed", extra={"backend_id": due["id"], "error": exc.code})
    return results


def register(scheduler, runtime) -> None:
    scheduler.add_job(run_due_syncs, "interval", args=[runtime], id=JOB_ID, replace_existing=True,
                      seconds=TICK_SECONDS, max_instances=1, coalesce=True, misfire_grace_time=60)
