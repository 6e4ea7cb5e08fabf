"""Issue 16 item 6: the monitoring page's series with bounded labels."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaivault.jobs import secret_counts
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


def _series(client, name: str) -> dict[tuple, float]:
    text = client.get("/v1/metrics").get_data(as_text=True)
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


def test_secrets_total_is_maintained_per_tenant_by_a_job(app, scaikey):
    callers = Callers(scaikey, app.test_client())
    tenant = new_tenant()
    admin = callers.admin(tenant)
    for i in range(3):
        assert admin.put(f"/v1/secrets/m/s{i}", json={"data": {"i": i}}).status_code == 201
    admin.delete("/v1/secrets/m/s2")                                         # soft-deleted: not live
    runtime = app.extensions["scaivault"]
    counts = secret_counts.publish_secret_counts(runtime)
    assert counts[tenant] == 2
    series = _series(app.test_client(), "scaivault_secrets_total")
    assert series[(("tenant", tenant),)] == 2
    assert all(labels[0][0] == "tenant" and len(labels) == 1 for labels in series)
    # it is a job: the request path does not change it
    admin.put("/v1/secrets/m/s3", json={"data": {}})
    assert _series(app.test_client(), "scaivault_secrets_total")[(("tenant", tenant),)] == 2
    assert secret_counts.publish_secret_counts(runtime)[tenant] == 3


def test_secret_counts_are_bounded(app, monkeypatch):
    monkeypatch.setattr(secret_counts, "TOP_TENANTS", 1)
    counts = secret_counts.publish_secret_counts(app.extensions["scaivault"])
    assert len(counts) <= 2 and (len(counts) == 1 or secret_counts.OTHER in counts)
    series = _series(app.test_client(), "scaivault_secrets_total")
    assert len(series) <= 2
    monkeypatch.undo()
    secret_counts.publish_secret_counts(app.extensions["scaivault"])


def test_the_scheduler_registers_the_job():
    from scaivault.jobs.scheduler import JOB_MODULES
    assert "scaivault.jobs.secret_counts" in JOB_MODULES


def test_bucket_fill_is_per_category_never_per_identity(app, scaikey):
    callers = Callers(scaikey, app.test_client())
    admin = callers.admin(new_tenant())
    admin.put("/v1/secrets/f/a", json={"data": {}})
    admin.get("/v1/secrets/f/a")
    series = _series(app.test_client(), "scaivault_rate_limit_bucket_fill")
    assert (("category", "secrets:read"),) in series and (("category", "secrets:write"),) in series
    for labels, fill in series.items():
        assert [k for k, _ in labels] == ["category"] and 0.0 <= fill <= 1.0
