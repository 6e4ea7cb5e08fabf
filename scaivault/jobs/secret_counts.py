"""scaivault_secrets_total{tenant}: live secrets per tenant, refreshed by a job (never per request).

One GROUP BY over the secrets table every few minutes, on every worker (the gauge's multiprocess
mode takes the maximum of the live ones). Label values are bounded: the TOP_TENANTS tenants with
the most secrets are named, the rest are summed under tenant="_other"; tenants that dropped out
are removed from the gauge.
"""
from __future__ import annotations

import logging

log = logging.getLogger("scaivault.jobs.secret_counts")

JOB_ID = "secret-counts"
INTERVAL_SECONDS = 300
TOP_TENANTS = 1000
OTHER = "_other"

_published: set[str] = set()


def publish_secret_counts(runtime) -> dict[str, int]:
    """Count live (not soft-deleted) tenant secrets and set the gauge; returns {tenant: count}."""
    from .. import metrics

    rows = runtime.db.query("""SELECT tenant_id, count(*) AS n FROM secrets
                                WHERE tenant_id IS NOT NULL AND deleted_at IS NULL
                                GROUP BY tenant_id ORDER BY count(*) DESC, tenant_id""")
    counts = {r["tenant_id"]: int(r["n"]) for r in rows[:TOP_TENANTS]}
    rest = sum(int(r["n"]) for r in rows[TOP_TENANTS:])
    if rest:
        counts[OTHER] = rest
    for gone in _published - set(counts):
        try:
            metrics.SECRETS_TOTAL.remove(gone)
        except KeyError:
            pass
    for tenant, n in counts.items():
        metrics.SECRETS_TOTAL.labels(tenant=tenant).set(n)
    _published.clear()
    _published.update(counts)
    return counts


def register(scheduler, runtime) -> None:
    from datetime import datetime, timezone

    scheduler.add_job(publish_secret_counts, "interval", args=[runtime], id=JOB_ID, replace_existing=True,
                      seconds=INTERVAL_SECONDS, next_run_time=datetime.now(timezone.utc), max_instances=1,
                      coalesce=True, misfire_grace_time=INTERVAL_SECONDS)
