"""GET /v1/metrics: Prometheus exposition, bounded labels, optional bearer, several workers."""
from __future__ import annotations

import glob
import os
import re
import secrets
import threading
import time

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.foundation_support import ServedInstance


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_exposition_carries_the_spec_series(client):
    response = client.get("/v1/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    for name in ("scaivault_requests_total", "scaivault_request_duration_seconds", "scaivault_active_requests",
                 "scaivault_rate_limit_hits_total", "scaivault_secret_reads_total", "scaivault_secret_writes_total",
                 "scaivault_db_latency_seconds", "scaivault_redis_latency_seconds", "scaivault_kms_latency_seconds",
                 "scaivault_db_pool_size", "scaivault_db_pool_available"):
        assert f"# TYPE {name}" in text or f"# TYPE {name.removesuffix('_total')}" in text, name


def test_request_counters_move_by_endpoint_category_not_by_url(client, scaikey, auth):
    token = scaikey.mint(sub="usr_metrics", email="m@x.io", tenant_id="tnt_metrics", partner_id="ptn_m",
                         scopes=("audit:read",), role="tenant_admin")
    before = client.get("/v1/metrics").get_data(as_text=True)
    for _ in range(3):
        assert client.get("/v1/audit/secrets/db/very-secret-name", headers=auth(token)).status_code == 200
    client.get("/v1/no/such/thing")
    after = client.get("/v1/metrics").get_data(as_text=True)
    key = dict(method="GET", path_category="audit:read", status="200")
    assert value(after, "scaivault_requests_total", **key) - value(before, "scaivault_requests_total", **key) == 3
    assert value(after, "scaivault_requests_total", method="GET", path_category="unmatched", status="404") >= 1
    assert value(after, "scaivault_request_duration_seconds_count", method="GET", path_category="audit:read") >= 3
    assert value(after, "scaivault_db_latency_seconds_count") > value(before, "scaivault_db_latency_seconds_count")
    # a large bucket is leased (issue 10): the caller's first request takes a slice, the rest decide in memory
    assert value(after, "scaivault_redis_latency_seconds_count") >= value(before, "scaivault_redis_latency_seconds_count") + 1
    assert value(after, "scaivault_db_pool_size") >= 1
    # no secret path and no identity ever becomes a label
    assert "very-secret-name" not in after and "m@x.io" not in after and "usr_metrics" not in after


def test_a_rate_limited_request_counts_a_hit_for_its_category(make_app):
    app = make_app(RATE_LIMITS="identity:webhook:\n  rate: 1\n  window: 1h\n")
    client = app.test_client()
    before = value(client.get("/v1/metrics").get_data(as_text=True), "scaivault_rate_limit_hits_total",
                   category="identity:webhook")
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], "rate_category", None) == "identity:webhook":
            path, method = rule.rule, sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
            break
    else:
        pytest.skip("no identity:webhook endpoint registered yet")
    ip = {"REMOTE_ADDR": f"10.9.{secrets.randbelow(250)}.{secrets.randbelow(250)}"}   # a bucket of its own
    for _ in range(3):
        client.open(path, method=method, data=b"{}", content_type="application/json", environ_base=ip)
    after = value(client.get("/v1/metrics").get_data(as_text=True), "scaivault_rate_limit_hits_total",
                  category="identity:webhook")
    assert after - before == 2


def test_metrics_token_requires_the_bearer(make_app):
    client = make_app(METRICS_TOKEN="scrape-me-" + "x" * 8).test_client()
    refused = client.get("/v1/metrics")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "authentication_required"
    assert client.get("/v1/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/metrics", headers={"Authorization": "Bearer scrape-me-xxxxxxxx"}).status_code == 200


def _serving_pids(metrics_dir) -> set[str]:
    """Processes whose sample file counts HEAD requests (one file per process)."""
    serving = set()
    for path in glob.glob(os.path.join(metrics_dir, "counter_*.db")):
        for key, count, *_ in MmapedDict.read_all_values_from_file(path):
            if '"HEAD"' in key and "scaivault_requests_total" in key and count > 0:
                serving.add(re.search(r"_(\d+)\.db$", path).group(1))
    return serving


@pytest.mark.slow
def test_counters_aggregate_across_two_gunicorn_workers(base_env, tmp_path):
    metrics_dir = tmp_path / "metrics"
    instance = ServedInstance({**base_env, "WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    with instance:
        url = instance.url
        errors = []
        sent = 0

        def hammer():
            try:
                for _ in range(5):
                    # a new connection each time, so both workers accept some
                    assert requests.head(url + "/v1/version", timeout=10,
                                         headers={"Connection": "close"}).status_code == 200
            except Exception as exc:  # reported below
                errors.append(exc)

        deadline = time.time() + 30
        # rounds of concurrent requests until both workers (booted at their own pace) served some
        while time.time() < deadline:
            threads = [threading.Thread(target=hammer) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            sent += 40
            assert not errors
            if len(_serving_pids(metrics_dir)) == 2:
                break
        assert len(_serving_pids(metrics_dir)) == 2
        totals = set()
        for _ in range(6):
            text = requests.get(url + "/v1/metrics", timeout=10, headers={"Connection": "close"}).text
            totals.add(value(text, "scaivault_requests_total", method="HEAD", path_category="probe", status="200"))
        # whichever worker answered the scrape, it reports the requests of both
        assert totals == {float(sent)}


def test_secret_reads_and_writes_are_counted_per_tenant(client, scaikey, auth):
    tenant = "tnt_m_" + secrets.token_hex(4)
    token = scaikey.mint(sub="usr_m_" + tenant, email=f"m@{tenant}.example", tenant_id=tenant, partner_id="ptn_m",
                         role="tenant_admin", scopes=("secrets:read", "secrets:write"))
    assert client.put("/v1/secrets/m/a", json={"data": {"k": "v"}}, headers=auth(token)).status_code in (200, 201)
    for _ in range(2):
        assert client.get("/v1/secrets/m/a", headers=auth(token)).status_code == 200
    text = client.get("/v1/metrics").get_data(as_text=True)
    assert value(text, "scaivault_secret_writes_total", tenant=tenant) == 1
    assert sum(v for (name, labels), v in samples(text).items()
               if name == "scaivault_secret_reads_total" and ("tenant", tenant) in labels) == 2
    assert value(text, "scaivault_audit_entries_total", action="read", success="true") >= 2


def test_requests_refused_before_routing_are_counted_too(client):
    before = client.get("/v1/metrics").get_data(as_text=True)
    refused = client.get("/v1/t/bad$tenant/health")
    assert refused.status_code == 400
    after = client.get("/v1/metrics").get_data(as_text=True)
    key = dict(method="GET", path_category="probe", status="400")
    assert value(after, "scaivault_requests_total", **key) - value(before, "scaivault_requests_total", **key) == 1
