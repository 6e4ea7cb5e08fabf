"""Prometheus series of spec/10 section 10 (plus audit and limiter health), one place.

Under `scaivault serve` the CLI points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
prometheus_client is first imported, so every gunicorn worker writes its samples there and
a scrape of any worker aggregates all of them. Labels are bounded: `path_category` is the
endpoint's rate-limit category, never the URL; identities and secret paths never appear.
"""
from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# ---- requests
REQUESTS = Counter("scaivault_requests_total", "HTTP requests answered",
                   ["method", "path_category", "status"])
REQUEST_DURATION = Histogram("scaivault_request_duration_seconds", "HTTP request duration",
                             ["method", "path_category"], buckets=_LATENCY_BUCKETS)
ACTIVE_REQUESTS = Gauge("scaivault_active_requests", "HTTP requests in progress",
                        ["path_category"], multiprocess_mode="livesum")

# ---- rate limiting
RATE_LIMIT_HITS = Counter("scaivault_rate_limit_hits_total", "Requests refused with 429", ["category"])
# the fill (0..1) of the bucket the last request of a category took from; per category only (identity is
# unbounded), the lowest across workers: a dashboard sees a category running dry (issue 16)
RATE_LIMIT_BUCKET_FILL = Gauge("scaivault_rate_limit_bucket_fill",
                               "Fill ratio of the bucket the latest request in this category took from",
                               ["category"], multiprocess_mode="livemin")
RATE_LIMITER_FALLBACK = Gauge("scaivault_rate_limiter_fallback",
                              "1 while this process counts limits in memory because Redis is unreachable",
                              multiprocess_mode="livemax")

# ---- secrets (scaivault_secrets_total is refreshed by scaivault.jobs.secret_counts)
SECRETS_TOTAL = Gauge("scaivault_secrets_total", "Live secrets", ["tenant"], multiprocess_mode="livemax")
SECRET_READS = Counter("scaivault_secret_reads_total", "Secret reads", ["tenant", "secret_type"])
SECRET_WRITES = Counter("scaivault_secret_writes_total", "Secret writes", ["tenant"])
GROUP_COMMIT_SIZE = Histogram("scaivault_group_commit_size", "Requests sharing one statement and commit",
                              ["kind"], buckets=(1, 2, 4, 8, 16, 32, 64))
SECRET_ROTATIONS = Counter("scaivault_secret_rotations_total", "Secret rotations", ["status"])

# ---- PKI and ACME (spec/10 metrics table; gauges set by the PKI job, the counter by ACME runners)
CERTIFICATES_ACTIVE = Gauge("scaivault_certificates_active", "Issued certificates neither revoked nor expired",
                            ["ca_id"], multiprocess_mode="livemax")
CERTIFICATES_EXPIRING = Gauge("scaivault_certificates_expiring_soon", "Active certificates expiring within N days",
                              ["within_days"], multiprocess_mode="livemax")
ACME_ORDERS = Counter("scaivault_acme_orders_total", "ACME orders finished", ["provider", "status"])

# ---- dependencies
DB_LATENCY = Histogram("scaivault_db_latency_seconds", "Database round-trip latency", buckets=_LATENCY_BUCKETS)
REDIS_LATENCY = Histogram("scaivault_redis_latency_seconds", "Redis round-trip latency", buckets=_LATENCY_BUCKETS)
KMS_LATENCY = Histogram("scaivault_kms_latency_seconds", "KMS call latency", ["operation"], buckets=_LATENCY_BUCKETS)
KMS_BREAKER_OPENED = Counter("scaivault_kms_breaker_opened_total",
                             "Times a KMS key was found unreachable and calls began to fail fast")
KMS_STALE_KEYS_USED = Counter("scaivault_kms_stale_keys_used_total",
                              "Keys used past KMS_CACHE_TTL (within KMS_CACHE_GRACE) while the KMS was unreachable")
DB_POOL_SIZE = Gauge("scaivault_db_pool_size", "Database pool size (connections allowed)",
                     multiprocess_mode="livesum")
DB_POOL_AVAILABLE = Gauge("scaivault_db_pool_available", "Database pool connections free or not yet opened",
                          multiprocess_mode="livesum")

# ---- dynamic credentials (issue 13); active leases are counted in PostgreSQL, so any worker's value is the truth
LEASES_ACTIVE = Gauge("scaivault_leases_active", "Live leases (active or awaiting revocation)", ["engine"],
                      multiprocess_mode="mostrecent")
LEASES_GENERATED = Counter("scaivault_leases_generated_total", "Dynamic credentials generated", ["engine", "role"])
ENGINE_HEALTH = Gauge("scaivault_engine_health", "1 when the engine's database answered its last connection, else 0",
                      ["engine"], multiprocess_mode="mostrecent")

# ---- audit
AUDIT_ENTRIES = Counter("scaivault_audit_entries_total", "Audit entries written", ["action", "success"])
AUDIT_WRITE_FAILURES = Counter("scaivault_audit_write_failures_total",
                               "Audit inserts that failed (the audited request failed with 503)")


_CHILDREN: dict[tuple, object] = {}


def labelled(metric, *values: str):
    """`metric.labels(*values)`, looked up once per combination: labels() costs more than the update
    it precedes, and the hot paths update a few series per request (issue 10)."""
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


def multiprocess_dir() -> str | None:
    """The PROMETHEUS_MULTIPROC_DIR this process writes to, if any (set by `scaivault serve`)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> tuple[bytes, str]:
    """The text exposition of every series (aggregated across workers in multiprocess mode)."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """gunicorn child_exit hook: drop the live gauges of a worker that exited."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)

# ---- lifecycle (issue 11): sampled when /v1/metrics is scraped
ROTATION_QUEUE_DEPTH = Gauge("scaivault_rotation_queue_depth", "Attached secrets due or overdue for rotation",
                             multiprocess_mode="livemax")
WEBHOOK_QUEUE_DEPTH = Gauge("scaivault_webhook_queue_depth", "Webhook deliveries pending (not yet delivered or given up)",
                            multiprocess_mode="livemax")
