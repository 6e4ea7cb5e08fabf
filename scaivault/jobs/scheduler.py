"""The APScheduler instance of one worker process, with every job module registered.

Each job module exposes `register(scheduler, runtime)`; add a line to JOB_MODULES per
module. Every gunicorn worker runs a scheduler: jobs guard themselves (advisory locks)
so that several instances and workers never run one job twice at once.
"""
from __future__ import annotations

import importlib
import logging

log = logging.getLogger("scaivault.jobs")

JOB_MODULES = [
    "scaivault.jobs.identity_sync",
    "scaivault.jobs.audit_partitions",
    "scaivault.jobs.federation_sync",
    "scaivault.jobs.lifecycle",
    "scaivault.jobs.pki",
    "scaivault.jobs.lease_expiry",
]


def start_scheduler(runtime):
    """Start a background scheduler (greenlets under gevent's patching) with every job; returns it."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    for module_path in JOB_MODULES:
        importlib.import_module(module_path).register(scheduler, runtime)
    scheduler.start()
    log.info("scheduler started", extra={"jobs": [job.id for job in scheduler.get_jobs()]})
    return scheduler


WORKER_START_DELAY_SECONDS = (5.0, 15.0)


def start_in_worker(worker) -> None:
    """gunicorn post_worker_init hook: run the jobs beside this worker's app.

    The scheduler starts a few (jittered) seconds after the worker, so that jobs due at
    start-up do not compete with a freshly booted worker's first requests, and the workers
    of one instance do not all knock on the database at the same moment.
    """
    import random
    import threading

    runtime = worker.wsgi.extensions["scaivault"]

    def start() -> None:
        try:
            runtime.__dict__["scheduler"] = start_scheduler(runtime)
        except Exception as exc:  # a job module failing to register must not kill serving
            log.error("scheduler did not start", extra={"error": type(exc).__name__})

    timer = threading.Timer(random.uniform(*WORKER_START_DELAY_SECONDS), start)
    timer.daemon = True
    timer.start()
