"""APScheduler job: revoke expired dynamic-credential leases and retry failed revocations.

Every worker schedules it; the advisory lock in DynamicService.sweep lets one run at a time
across all instances. Leases live in PostgreSQL only, so a Redis loss loses none.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

log = logging.getLogger("scaivault.jobs.lease_expiry")

JOB_ID = "lease-expiry"


def run_sweep(runtime) -> dict:
    """One tick: revoke what is due, then refresh the lease gauges."""
    result = runtime.dynamic.sweep()
    if not result["skipped"]:
        runtime.dynamic.refresh_gauges()
        if result["revoked"] or result["failed"]:
            log.info("lease sweep", extra={"revoked": result["revoked"], "failed": result["failed"]})
    return result


def register(scheduler, runtime) -> None:
    """Add the job to an APScheduler scheduler (BackgroundScheduler or GeventScheduler)."""
    scheduler.add_job(run_sweep, "interval", args=[runtime], id=JOB_ID, replace_existing=True,
                      seconds=runtime.settings.lease_sweep_interval, max_instances=1, coalesce=True,
                      misfire_grace_time=60, next_run_time=datetime.now(timezone.utc))
