"""APScheduler jobs of the PKI: re-sign CRLs before their nextUpdate (or after revocations a
runner missed), renew auto_renew certificates at two thirds of their lifetime, and record
certificate.expiring once per certificate. Each job is safe on every instance at once: CRL
numbers only move forward, renewals take a per-certificate advisory lock.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from ..audit import record
from ..services.pki import system_audit

log = logging.getLogger("scaivault.jobs.pki")

CRL_JOB_ID = "pki-crl-refresh"
RENEW_JOB_ID = "pki-renewals"
INTERVAL_SECONDS = 300
EXPIRING_WITHIN = timedelta(days=7)


EXPIRING_GAUGE_DAYS = (1, 7, 30)


def refresh_crls(runtime) -> int:
    refreshed = runtime.pki.refresh_due_crls()
    publish_certificate_gauges(runtime)
    return refreshed


def publish_certificate_gauges(runtime) -> None:
    """scaivault_certificates_active{ca_id} and scaivault_certificates_expiring_soon{within_days}."""
    from .. import metrics

    rows = runtime.db.query("""SELECT ca_id, count(*) AS active,
                                      count(*) FILTER (WHERE not_after <= now() + interval '1 day') AS d1,
                                      count(*) FILTER (WHERE not_after <= now() + interval '7 days') AS d7,
                                      count(*) FILTER (WHERE not_after <= now() + interval '30 days') AS d30
                                 FROM pki_certificates WHERE revoked_at IS NULL AND not_after > now()
                                GROUP BY ca_id""")
    for row in rows:
        metrics.CERTIFICATES_ACTIVE.labels(ca_id=row["ca_id"]).set(row["active"])
    for days, column in zip(EXPIRING_GAUGE_DAYS, ("d1", "d7", "d30")):
        metrics.CERTIFICATES_EXPIRING.labels(within_days=str(days)).set(sum(r[column] for r in rows))


def renew_and_note_expiring(runtime) -> dict:
    renewed = runtime.pki.renew_due(lambda row: system_audit(row, "system:pki-renewal"))
    noted = note_expiring(runtime)
    return {"renewed": renewed, "expiring": noted}


def note_expiring(runtime, *, now: datetime | None = None) -> int:
    """certificate.expiring, once per certificate, for unrevoked, unrenewed ones within 7 days of expiry."""
    now = now or datetime.now(timezone.utc)
    with runtime.db.transaction() as s:
        rows = s.query("""UPDATE pki_certificates SET expiring_noted_at = now()
                           WHERE id IN (SELECT id FROM pki_certificates
                                         WHERE expiring_noted_at IS NULL AND revoked_at IS NULL AND renewed_by IS NULL
                                           AND source <> 'ca' AND not_after > :now AND not_after <= :horizon
                                         LIMIT 500 FOR UPDATE SKIP LOCKED)
                          RETURNING id, partner_id, tenant_id, secret_path, serial_number, ca_id, not_after""",
                       now=now, horizon=now + EXPIRING_WITHIN)
        for row in rows:
            record(s, system_audit(row)("pki_read", secret_path=row["secret_path"],
                                        extra={"event": "certificate.expiring", "certificate_id": row["id"],
                                               "serial_number": row["serial_number"], "ca_id": row["ca_id"],
                                               "not_after": row["not_after"].isoformat()}))
    return len(rows)


ACME_JOB_ID = "acme-orders"
ACME_INTERVAL_SECONDS = 30


def acme_orders(runtime) -> dict:
    """Resume orders whose runner is gone, and start renewals of auto_renew ACME certificates."""
    return {"resumed": runtime.acme.resume_stalled(), "renewals": runtime.acme.renew_due()}


def register(scheduler, runtime) -> None:
    scheduler.add_job(acme_orders, "interval", args=[runtime], id=ACME_JOB_ID, replace_existing=True,
                      seconds=ACME_INTERVAL_SECONDS, max_instances=1, coalesce=True,
                      misfire_grace_time=ACME_INTERVAL_SECONDS)
    scheduler.add_job(refresh_crls, "interval", args=[runtime], id=CRL_JOB_ID, replace_existing=True,
                      seconds=INTERVAL_SECONDS, next_run_time=datetime.now(timezone.utc), max_instances=1,
                      coalesce=True, misfire_grace_time=INTERVAL_SECONDS)
    scheduler.add_job(renew_and_note_expiring, "interval", args=[runtime], id=RENEW_JOB_ID, replace_existing=True,
                      seconds=INTERVAL_SECONDS, max_instances=1, coalesce=True, misfire_grace_time=INTERVAL_SECONDS)
