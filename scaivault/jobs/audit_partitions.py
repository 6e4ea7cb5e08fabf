"""APScheduler job: keep monthly audit partitions ahead of time and drop expired ones.

Runs at start and then every 6 hours on every instance; an advisory lock lets one run at a
time. Also restarts audit exports whose runner disappeared.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from ..audit import exports, partitions

log = logging.getLogger("scaivault.jobs.audit_partitions")

JOB_ID = "audit-partitions"
INTERVAL_SECONDS = 6 * 3600
EXPORTS_JOB_ID = "audit-exports-resume"
EXPORTS_INTERVAL_SECONDS = 60


def run_maintenance(runtime) -> dict[str, list[str]]:
    """One tick: create future partitions, drop those past AUDIT_RETENTION."""
    return partitions.maintain(runtime.db, runtime.settings.audit_retention)


def register(scheduler, runtime) -> None:
    """Add the jobs to an APScheduler scheduler (BackgroundScheduler or GeventScheduler)."""
    scheduler.add_job(run_maintenance, "interval", args=[runtime], id=JOB_ID, replace_existing=True,
                      seconds=INTERVAL_SECONDS, next_run_time=datetime.now(timezone.utc), max_instances=1,
                      coalesce=True, misfire_grace_time=3600)
    scheduler.add_job(exports.resume_stalled, "interval", args=[runtime], id=EXPORTS_JOB_ID, replace_existing=True,
                      seconds=EXPORTS_INTERVAL_SECONDS, max_instances=1, coalesce=True, misfire_grace_time=60)
