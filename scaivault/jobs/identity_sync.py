"""The periodic identity full sync (every IDENTITY_SYNC_INTERVAL) as an APScheduler job.

Every instance and worker may schedule it; the advisory lock in identity.sync lets exactly
one run at a time, and a tick that comes less than half an interval after the last
successful full sync (run by any instance) is skipped, so N schedulers still make one sync
per interval.
"""
from __future__ import annotations

import logging
from datetime import timedelta

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
    return sync.run_sync(runtime, run)


def register(scheduler, runtime) -> None:
    """Add the job to an APScheduler scheduler (BackgroundScheduler or GeventScheduler)."""
    scheduler.add_job(run_scheduled_sync, "interval", args=[runtime], id=JOB_ID, replace_existing=True,
                      seconds=runtime.settings.identity_sync_interval, max_instances=1, coalesce=True,
                      misfire_grace_time=60)
