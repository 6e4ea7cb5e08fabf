"""Errors and logging: every failure is the spec/10 envelope (never HTML), request ids are echoed
or generated, LOG_FORMAT json/text, one access line per request, no token in any log."""
from __future__ import annotations

import json
import logging
import sys

import pytest
from flask import Blueprint, jsonify
from pydantic import BaseModel

from scaivault.api.pipeline import endpoint
from scaivault.logging_setup import configure_logging


class Greeting(BaseModel):
    name: str
    times: int = 1


def _probe_blueprint() -> Blueprint:
    """Routes that exist only on the test's own app instance, to exercise body handling."""
    bp = Blueprint("error_probe", __name__)

    @bp.post("/v1/_probe/echo")
    @endpoint(None, authenticated=False, body=Greeting)
    def echo():
        from flask import g
        return jsonify(g.body.model_dump())

    @bp.get("/v1/_probe/crash")
    @endpoint(None, authenticated=False)
    def crash():
        raise RuntimeError("the secret value hunter2 leaked into an exception message")

    return bp


@pytest.fixture
def probe(make_app):
    app = make_app()
    app.register_blueprint(_probe_blueprint())
    return app.test_client()


def _envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def test_unknown_route_gets_the_json_404(client):
    _envelope(client.get("/v1/does/not/exist"), 404, "not_found")
    _envelope(client.get("/"), 404, "not_found")


def test_wrong_method_gets_405_with_allow_header(client):
    response = client.delete("/v1/health")
    _envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_a_2_mib_body_gets_413_in_the_envelope(client):
    response = client.post("/v1/health", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    error = _envelope(response, 413, "payload_too_large")
    assert "1048576" in error["message"]


def test_a_body_just_under_the_limit_is_read(probe):
    padding = "x" * (1024 * 1024 - 100)
    response = probe.post("/v1/_probe/echo", json={"name": padding})
    assert response.status_code == 200


def test_max_request_bytes_is_configurable(make_app):
    client = make_app(MAX_REQUEST_BYTES="1k").test_client()
    _envelope(client.post("/v1/health", data=b"x" * 2048), 413, "payload_too_large")


def test_a_body_that_is_not_json_gets_400_invalid_request(probe):
    _envelope(probe.post("/v1/_probe/echo", data=b"{not json", content_type="application/json"),
              400, "invalid_request")


def test_a_json_array_body_gets_400_invalid_request(probe):
    _envelope(probe.post("/v1/_probe/echo", json=[1, 2]), 400, "invalid_request")


def test_an_empty_body_gets_400_invalid_request(probe):
    _envelope(probe.post("/v1/_probe/echo"), 400, "invalid_request")


def test_a_form_body_gets_415_unsupported_media_type(probe):
    _envelope(probe.post("/v1/_probe/echo", data={"name": "x"}), 415, "unsupported_media_type")


def test_failing_fields_get_422_with_the_fields_named(probe):
    error = _envelope(probe.post("/v1/_probe/echo", json={"times": "many"}), 422, "validation_error")
    assert set(error["details"]["fields"]) == {"name", "times"}


def test_an_unexpected_exception_is_a_500_envelope_without_its_message(probe, capsys):
    response = probe.get("/v1/_probe/crash")
    _envelope(response, 500, "internal_error")
    assert "hunter2" not in response.get_data(as_text=True)
    assert "hunter2" not in capsys.readouterr().err


def test_a_well_formed_client_request_id_is_echoed_apart_from_the_servers_own(client):
    response = client.get("/v1/health", headers={"X-Request-ID": "deploy-42.check:7"})
    assert response.headers["X-Request-ID"].startswith("req_")
    assert response.headers["X-Client-Request-ID"] == "deploy-42.check:7"


@pytest.mark.parametrize("bad", ["has space", "x" * 200, "semi;colon", "<script>"])
def test_a_malformed_request_id_is_replaced_by_a_generated_one(client, bad):
    response = client.get("/v1/nope", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"].startswith("req_")
    assert "X-Client-Request-ID" not in response.headers
    assert response.get_json()["error"]["request_id"] == response.headers["X-Request-ID"]


def test_a_malformed_tenant_prefix_is_an_invalid_request(client):
    _envelope(client.get("/v1/t/bad%20tenant!/health"), 400, "invalid_request")


def test_responses_are_not_cached(client):
    assert client.get("/v1/health").headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------------------- logging

@pytest.fixture
def restore_logging():
    yield
    configure_logging("warn", "text")   # back to the session's quiet handler on the real stderr
    logging.getLogger().handlers[-1].stream = sys.__stderr__  # capsys is still active here


def _access_lines(err: str) -> list[dict]:
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [e for e in entries if e["logger"] == "scaivault.access"]


def test_json_logs_have_one_access_line_per_request_and_never_the_token(make_app, capsys, restore_logging):
    client = make_app(LOG_FORMAT="json", LOG_LEVEL="info").test_client()
    capsys.readouterr()
    token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.sig-Zx81"
    client.get("/v1/health", headers={"Authorization": f"Bearer {token}"})
    client.get("/v1/nope?token=query-secret-Qw7", headers={"Authorization": f"Bearer {token}"})
    client.get("/v1/health/detailed", headers={"Authorization": f"Bearer {token}"})
    err = capsys.readouterr().err
    for line in err.splitlines():
        if line.strip():
            json.loads(line)                 # every line is one JSON object
    access = _access_lines(err)
    assert [(a["path"], a["status"]) for a in access] == [
        ("/v1/health", 200), ("/v1/nope", 404), ("/v1/health/detailed", 401)]
    assert all(a["request_id"].startswith("req_") and "duration_ms" in a for a in access)
    assert token not in err and "c2VjcmV0" not in err and "query-secret-Qw7" not in err


def test_text_logs_are_one_line_per_request(make_app, capsys, restore_logging):
    client = make_app(LOG_FORMAT="text", LOG_LEVEL="info").test_client()
    capsys.readouterr()
    client.get("/v1/version")
    lines = [line for line in capsys.readouterr().err.splitlines() if "scaivault.access" in line]
    assert len(lines) == 1
    assert "path=/v1/version" in lines[0] and "status=200" in lines[0] and not lines[0].startswith("{")


def test_log_level_error_hides_access_lines(make_app, capsys, restore_logging):
    client = make_app(LOG_FORMAT="json", LOG_LEVEL="error").test_client()
    capsys.readouterr()
    client.get("/v1/version")
    assert _access_lines(capsys.readouterr().err) == []


# ---------------------------------------------------------------------------- client address

def _remote_addr_seen(app, peer: str, forwarded: str | None) -> str:
    from flask import request

    seen = {}

    @app.get("/v1/_probe/addr")
    def addr():
        seen["addr"] = request.remote_addr
        return jsonify({})

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    app.test_client().get("/v1/_probe/addr", headers=headers, environ_base={"REMOTE_ADDR": peer})
    return seen["addr"]


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_app):
    assert _remote_addr_seen(make_app(), "203.0.113.9", "198.51.100.1") == "203.0.113.9"
    app = make_app(TRUSTED_PROXIES="10.0.0.0/8")
    assert _remote_addr_seen(app, "203.0.113.9", "198.51.100.1") == "203.0.113.9"


def test_behind_trusted_proxies_the_client_is_the_nearest_untrusted_hop(make_app):
    app = make_app(TRUSTED_PROXIES="10.0.0.0/8,192.168.0.5")
    # the client tried to claim 1.1.1.1; the outer proxy appended the real address
    assert _remote_addr_seen(app, "10.1.2.3", "1.1.1.1, 198.51.100.7, 192.168.0.5") == "198.51.100.7"


def test_a_malformed_forwarded_header_keeps_the_proxy_address(make_app):
    app = make_app(TRUSTED_PROXIES="10.0.0.0/8")
    assert _remote_addr_seen(app, "10.1.2.3", "not-an-ip") == "10.1.2.3"
