"""The periodic identity full sync (every IDENTITY_SYNC_INTERVAL) as an APScheduler job.

Every instance and worker may schedule it; the advisory lock in identity.sync lets exactly
one run at a time, and a tick that comes less than half an interval after the last
successful full sync (run by any instance) is skipped, so N schedulers still make one sync
per interval.
"""
from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta, timezone

from ..identity import sync

log = logging.getLogger("scaivault.jobs.identity_sync")

JOB_ID = "identity-full-sync"


def run_scheduled_sync(runtime) -> dict | None:
    """One scheduler tick: a full sync unless one finished recently; returns the run row or None."""
    if not runtime.settings.scaikey_url or not runtime.settings.scaikey_client_id:
        return None
    interval = runtime.settings.identity_sync_interval
    last = sync.last_success(runtime)
    if last is not None and sync.utcnow() - last < timedelta(seconds=interval / 2):
        return None
    run = sync.new_run(runtime, trigger="schedule", requested_by="system:identity-sync")
    result = sync.run_sync(runtime, run)
    if result["status"] == "skipped":
        # another instance's tick is running it; keep the history free of these non-events
        runtime.db.execute("DELETE FROM identity_sync_runs WHERE id = :id", id=run["id"])
        return None
    return result


def register(scheduler, runtime) -> None:
    """Add the job to an APScheduler scheduler (BackgroundScheduler or GeventScheduler)."""
    scheduler.add_job(run_scheduled_sync, "interval", args=[runtime], id=JOB_ID, replace_existing=True,
                      seconds=runtime.settings.identity_sync_interval, max_instances=1, coalesce=True,
                      misfire_grace_time=60,
                      # a first sync shortly after start (a fresh install learns its identities),
                      # jittered so the workers of one instance do not all knock at once
                      next_run_time=datetime.now(timezone.utc) + timedelta(seconds=10 + random.uniform(0, 20)))
