"""Queue-depth gauges of spec/30 2.7, sampled at scrape time (two indexed counts)."""
from __future__ import annotations

import logging

log = logging.getLogger("scaivault.lifecycle")


def sample_queue_depths(runtime) -> None:
    from .. import metrics
    from ..services.rotation import RotationService

    try:
        metrics.ROTATION_QUEUE_DEPTH.set(RotationService(runtime.db, None).queue_depth())
        metrics.WEBHOOK_QUEUE_DEPTH.set(int(runtime.db.scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'") or 0))
    except Exception as exc:   # a scrape must answer even when these counts cannot be taken
        log.warning("queue depth not sampled", extra={"error": type(exc).__name__})
