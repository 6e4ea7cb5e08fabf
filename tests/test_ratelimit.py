"""Rate limits: categories, RATE_LIMITS overrides, headers, 429, shared Redis, Redis outage."""
from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time

import pytest
from flask import jsonify

from scaivault import ratelimit
from scaivault.api.pipeline import endpoint
from scaivault.config import ConfigError, load_settings

UNMETERED = {"/v1/health", "/v1/health/ready", "/v1/health/detailed", "/v1/version", "/v1/metrics",
             "/v1/openapi.json",
             "/ui/api/<path:rest>"}   # the admin UI's proxy: the /v1 call it makes is metered

FIVE_PER_HOUR = "auth:\n  rate: 5\n  window: 1h\n"


def with_probe_route(app):
    """Add an unauthenticated route of the `auth` category (keyed by client IP)."""

    @endpoint("auth", authenticated=False)
    def probe():
        return jsonify({"ok": True})

    app.add_url_rule("/v1/test/ratelimit-probe", "ratelimit_probe", probe)
    return app


def client_ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{1 + secrets.randbelow(250)}"


def get(app, ip):
    return app.test_client().get("/v1/test/ratelimit-probe", environ_base={"REMOTE_ADDR": ip})


def test_every_endpoint_belongs_to_exactly_one_known_category(app):
    seen = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        view = app.view_functions[rule.endpoint]
        assert hasattr(view, "rate_category"), f"{rule.rule} is not wrapped in @endpoint"
        category = view.rate_category
        if category is None:
            assert rule.rule in UNMETERED, f"{rule.rule} has no rate-limit category"
        else:
            assert category in ratelimit.CATEGORIES, f"{rule.rule}: unknown category {category!r}"
        seen += 1
    assert seen >= 4


def test_the_sixth_request_within_a_limit_of_five_gets_429_with_headers(make_app):
    app = with_probe_route(make_app(RATE_LIMITS=FIVE_PER_HOUR))
    ip = client_ip()
    for i in range(5):
        response = get(app, ip)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert response.headers["X-RateLimit-Remaining"] == str(4 - i)
        assert int(response.headers["X-RateLimit-Reset"]) > time.time()
    refused = get(app, ip)
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"]["category"] == "auth"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Limit"] == "5"
    # another caller has its own bucket
    assert get(app, client_ip()).status_code == 200


def test_a_limit_is_shared_by_two_instances_on_the_same_redis(make_app):
    first = with_probe_route(make_app(RATE_LIMITS=FIVE_PER_HOUR))
    second = with_probe_route(make_app(RATE_LIMITS=FIVE_PER_HOUR))
    ip = client_ip()
    statuses = [get(first if i % 2 else second, ip).status_code for i in range(6)]
    assert statuses == [200] * 5 + [429]
    assert get(first, ip).status_code == 429


def test_defaults_apply_to_categories_not_overridden(make_app):
    app = with_probe_route(make_app(RATE_LIMITS=""))
    response = get(app, client_ip())
    assert response.headers["X-RateLimit-Limit"] == str(ratelimit.CATEGORIES["auth"][0])


@pytest.mark.parametrize("yaml_text, fragment", [
    ("secrets:reed:\n  rate: 5\n  window: 1m\n", "unknown category 'secrets:reed'"),
    ("secrets:read:\n  rate: lots\n", "rate must be a positive integer"),
    ("secrets:read:\n  rate: 5\n  window: soon\n", "window"),
    ("- secrets:read\n", "mapping"),
])
def test_a_bad_rate_limits_value_stops_start_up_naming_the_variable(base_env, yaml_text, fragment):
    with pytest.raises(ConfigError) as caught:
        load_settings({**base_env, "RATE_LIMITS": yaml_text})
    assert caught.value.variable == "RATE_LIMITS"
    assert fragment in str(caught.value)


def test_secrets_read_override_is_accepted(base_env):
    settings = load_settings({**base_env, "RATE_LIMITS": "secrets:read:\n  rate: 2000\n  window: 1m\n"})
    assert ratelimit.effective_limits(settings.rate_limits)["secrets:read"] == (2000, 60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis():
    """A redis-server of this test alone, so it can be stopped mid-test."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    if proc.poll() is None:
        proc.terminate()
        proc.wait(5)


def test_requests_are_still_served_when_redis_goes_away(make_app, own_redis, scaikey, auth):
    proc, url = own_redis
    app = with_probe_route(make_app(REDIS_URL=url, RATE_LIMITS=FIVE_PER_HOUR))
    ip = client_ip()
    assert get(app, ip).status_code == 200
    assert ratelimit.status(app) == {"status": "ok", "storage": "redis"}
    proc.terminate()
    proc.wait(5)
    started = time.perf_counter()
    response = get(app, ip)
    assert response.status_code == 200
    assert time.perf_counter() - started < 2
    status = ratelimit.status(app)
    assert status["status"] == "degraded" and status["storage"] == "memory"
    # the in-memory fallback still limits (per instance)
    statuses = [get(app, ip).status_code for _ in range(6)]
    assert 429 in statuses
    metrics_text = app.test_client().get("/v1/metrics").get_data(as_text=True)
    assert "scaivault_rate_limiter_fallback 1.0" in metrics_text
    token = scaikey.mint(sub="usr_ops", email="ops@x.io", tenant_id="tnt_ops", partner_id="ptn_ops", scopes=("admin",))
    detailed = app.test_client().get("/v1/health/detailed", headers=auth(token))
    assert detailed.status_code == 200, detailed.get_json()
    assert detailed.get_json()["rate_limiter"]["status"] == "degraded"


@pytest.mark.slow
def test_the_limiter_returns_to_redis_when_it_comes_back(make_app, own_redis):
    proc, url = own_redis
    port = url.rsplit(":", 1)[1].split("/")[0]
    app = with_probe_route(make_app(REDIS_URL=url))
    ip = client_ip()
    proc.terminate()
    proc.wait(5)
    assert get(app, ip).status_code == 200
    assert ratelimit.status(app)["status"] == "degraded"
    restarted = subprocess.Popen([shutil.which("redis-server"), "--port", port, "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline and ratelimit.status(app)["status"] != "ok":
            get(app, ip)
            time.sleep(0.2)
        assert ratelimit.status(app)["status"] == "ok"
    finally:
        restarted.terminate()
        restarted.wait(5)


def test_the_bucket_refills_continuously_at_the_category_rate(make_app):
    app = with_probe_route(make_app(RATE_LIMITS="auth:\n  rate: 3\n  window: 3s\n"))   # 3 tokens, one per second
    ip = client_ip()
    assert [get(app, ip).status_code for _ in range(3)] == [200] * 3     # a burst up to the bucket size
    refused = get(app, ip)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    time.sleep(1.05)                                                    # one token has dripped back
    assert get(app, ip).status_code == 200
    assert get(app, ip).status_code == 429


def test_the_memory_fallback_is_the_same_token_bucket():
    buckets = ratelimit.MemoryBuckets()
    results = [buckets.take("k", 3, 1.0, 1)[0] for _ in range(4)]
    assert results == [True, True, True, False]
    allowed, tokens, _ = buckets.take("other", 3, 1.0, 1)
    assert allowed and tokens == 2.0
