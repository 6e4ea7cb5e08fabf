"""Lifecycle jobs: the rotation/expiry scan every ROTATION_SCAN_INTERVAL, and this process's event pump.

Every worker schedules the scan; the advisory lock inside RotationService.scan lets one run
at a time across instances, and the per-(secret, cycle) guard makes any overlap harmless.
"""
from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta, timezone

log = logging.getLogger("scaivault.jobs.lifecycle")

JOB_ID = "rotation-scan"
EVENT_RETENTION_DAYS = 30


def run_scan(runtime) -> dict:
    """One tick: rotations, expiry notices, housekeeping of expired previous secrets and old events."""
    from ..services.rotation import RotationService

    stats = RotationService(runtime.db, runtime.secret_store).scan()
    if stats["locked"]:
        runtime.db.execute("""UPDATE webhooks SET sealed_previous_secret = NULL, previous_secret_version = NULL,
                                     previous_secret_expires_at = NULL WHERE previous_secret_expires_at <= now()""")
        runtime.db.execute("""DELETE FROM events WHERE dispatched_at IS NOT NULL
                                 AND created_at < now() - make_interval(days => :d)""", d=EVENT_RETENTION_DAYS)
    return stats


def register(scheduler, runtime) -> None:
    from ..events.pump import pump_for

    pump_for(runtime)
    scheduler.add_job(run_scan, "interval", args=[runtime], id=JOB_ID, replace_existing=True,
                      seconds=runtime.settings.rotation_scan_interval, max_instances=1, coalesce=True,
                      misfire_grace_time=60,
                      next_run_time=datetime.now(timezone.utc) + timedelta(seconds=5 + random.uniform(0, 10)))
