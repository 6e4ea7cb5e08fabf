"""Issue 9 F15: without METRICS_TOKEN, /v1/metrics (tenant ids, per-tenant activity) is served only
over loopback or on the separate METRICS_BIND_ADDRESS listener, never on the public port."""
from __future__ import annotations

import socket

import pytest
import requests

from scaivault.config import ConfigError, load_settings
from tests.foundation_support import ServedInstance, free_port, get_ready

OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}


def test_without_a_token_a_remote_scraper_is_refused_on_the_api_port(make_app):
    client = make_app().test_client()
    refused = client.get("/v1/metrics", environ_base=OUTSIDE)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    assert b"scaivault_" not in refused.data
    assert client.get("/v1/metrics").status_code == 200                       # loopback peer
    assert client.get("/v1/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_a_request_a_local_proxy_forwarded_is_not_loopback(make_app):
    client = make_app().test_client()
    forwarded = client.get("/v1/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403
    assert client.get("/v1/metrics", headers={"Forwarded": "for=203.0.113.9"}).status_code == 403


def test_with_a_token_the_token_decides_wherever_the_scraper_is(make_app):
    client = make_app(METRICS_TOKEN="scrape-" + "y" * 10).test_client()
    assert client.get("/v1/metrics", environ_base=OUTSIDE).status_code == 401
    assert client.get("/v1/metrics", environ_base=OUTSIDE,
                      headers={"Authorization": "Bearer scrape-yyyyyyyyyy"}).status_code == 200


def test_the_metrics_listener_serves_metrics_and_health_only(make_app):
    client = make_app(METRICS_BIND_ADDRESS="0.0.0.0:9464").test_client()
    on_metrics_port = {"environ_base": OUTSIDE, "base_url": "http://10.0.0.5:9464"}
    assert client.get("/v1/metrics", **on_metrics_port).status_code == 200
    assert client.get("/v1/health", **on_metrics_port).status_code == 200
    other = client.get("/v1/secrets/a", **on_metrics_port)
    assert other.status_code == 404 and other.get_json()["error"]["code"] == "not_found"
    assert client.get("/v1/metrics", environ_base=OUTSIDE, base_url="http://10.0.0.5:8443").status_code == 403


def test_metrics_bind_address_is_validated(base_env):
    with pytest.raises(ConfigError) as exc:
        load_settings({**base_env, "METRICS_BIND_ADDRESS": "nope"})
    assert exc.value.variable == "METRICS_BIND_ADDRESS"
    with pytest.raises(ConfigError):
        load_settings({**base_env, "BIND_ADDRESS": "0.0.0.0:9000", "METRICS_BIND_ADDRESS": "0.0.0.0:9000"})


def _outward_address() -> str | None:
    """This host's address on a non-loopback interface, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.slow
def test_scaivault_serve_keeps_metrics_off_the_public_port_and_on_the_metrics_listener(base_env):
    outward = _outward_address()
    if outward is None:
        pytest.skip("no non-loopback interface to play the remote scraper from")
    metrics_port = free_port()
    instance = ServedInstance({**base_env, "METRICS_BIND_ADDRESS": f"127.0.0.1:{metrics_port}"})
    instance.env["BIND_ADDRESS"] = f"0.0.0.0:{instance.port}"
    with instance:
        assert get_ready(instance.url).status_code == 200
        public = requests.get(f"http://{outward}:{instance.port}/v1/metrics", timeout=10)
        assert public.status_code == 403 and "scaivault_" not in public.text
        scraped = requests.get(f"http://127.0.0.1:{metrics_port}/v1/metrics", timeout=10)
        assert scraped.status_code == 200 and "scaivault_requests_total" in scraped.text
        assert requests.get(f"http://127.0.0.1:{metrics_port}/v1/auth/whoami", timeout=10).status_code == 404
        assert requests.get(f"http://{outward}:{instance.port}/v1/health", timeout=10).status_code == 200
