"""`scaivault serve`: gunicorn + gevent on BIND_ADDRESS, TLS and mandatory client certificates,
graceful SIGTERM, and body limits as a real HTTP client meets them."""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time

import pytest
import redis
import requests

from tests.foundation_support import RedisServer, ServedInstance, free_port, get_ready, make_pki

pytestmark = pytest.mark.slow

# an idle keep-alive connection holds a graceful shutdown for up to gunicorn's keepalive (5 s)
CLOSE = {"Connection": "close"}


@pytest.fixture(scope="module")
def served(base_env):
    instance = ServedInstance({**base_env, "LOG_FORMAT": "json", "LOG_LEVEL": "info"}).start()
    assert get_ready(instance.url).status_code == 200
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_serve_answers_the_health_endpoints_under_gunicorn_gevent(served):
    assert requests.get(served.url + "/v1/health", timeout=5).json()["status"] == "healthy"
    assert requests.get(served.url + "/v1/health/ready", timeout=5).json()["status"] == "ready"
    assert requests.get(served.url + "/v1/version", timeout=5).status_code == 200
    response = requests.get(served.url + "/v1/no/such/route", timeout=5)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_2_mib_body_with_content_length_gets_the_413_envelope(served):
    response = requests.post(served.url + "/v1/health", data=b"x" * (2 * 1024 * 1024),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_2_mib_chunked_body_without_content_length_gets_the_413_envelope(served):
    def chunks():
        for _ in range(32):
            yield b"x" * (64 * 1024)

    response = requests.post(served.url + "/v1/health", data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_the_served_process_keeps_serving_after_bad_requests(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    conn.request("POST", "/v1/health", body=b"{not json", headers={"Content-Type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 405 and json.loads(reply.read())["error"]["code"] == "method_not_allowed"
    conn.request("GET", "/v1/health")                 # same keep-alive connection
    assert conn.getresponse().status == 200
    conn.close()


def test_sigterm_lets_an_in_flight_request_finish(base_env):
    # A private Redis paused for 1.5 s makes the readiness probe a real slow request.
    private_redis = RedisServer().start()
    instance = ServedInstance({**base_env, "REDIS_URL": private_redis.url}).start()
    try:
        assert get_ready(instance.url).status_code == 200
        admin = redis.Redis.from_url(private_redis.url)
        result: dict = {}

        def slow_request():
            started = time.monotonic()
            response = requests.get(instance.url + "/v1/health/ready", timeout=20)
            result.update(status=response.status_code, body=response.json(), seconds=time.monotonic() - started)

        admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        worker = threading.Thread(target=slow_request)
        worker.start()
        time.sleep(0.5)                       # the request is now waiting on Redis
        instance.terminate()
        worker.join(20)
        assert result["status"] == 200, result
        assert result["body"]["status"] == "ready"
        assert result["seconds"] >= 1.0      # it really was in flight when SIGTERM arrived
        assert instance.stop() == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(instance.url + "/v1/health", timeout=2)
    finally:
        if instance.proc.returncode is None:
            instance.stop()
        private_redis.stop()


def test_tls_is_terminated_with_the_configured_certificate(base_env, pki):
    env = {**base_env, "TLS_CERT_FILE": str(pki.server_cert), "TLS_KEY_FILE": str(pki.server_key)}
    with ServedInstance(env) as instance:
        response = requests.get(instance.url + "/v1/health", verify=str(pki.ca_cert), timeout=5, headers=CLOSE)
        assert response.status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(instance.url.replace("https", "http") + "/v1/health", timeout=5)


def test_a_client_ca_makes_a_client_certificate_mandatory(base_env, pki):
    env = {**base_env, "TLS_CERT_FILE": str(pki.server_cert), "TLS_KEY_FILE": str(pki.server_key),
           "TLS_CLIENT_CA_FILE": str(pki.ca_cert)}
    with ServedInstance(env) as instance:
        with_cert = requests.get(instance.url + "/v1/health", verify=str(pki.ca_cert),
                                 cert=(str(pki.client_cert), str(pki.client_key)), timeout=5, headers=CLOSE)
        assert with_cert.status_code == 200

        # without a certificate the TLS handshake fails: no HTTP exchange takes place
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        with socket.create_connection(("127.0.0.1", instance.port), timeout=5) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                    if not tls.recv(1024):
                        raise ConnectionResetError("closed without an answer")

        with pytest.raises(requests.exceptions.SSLError):
            requests.get(instance.url + "/v1/health", verify=str(pki.ca_cert), timeout=5)


def test_gunicorn_messages_use_the_scaivault_log_format(base_env):
    instance = ServedInstance({**base_env, "LOG_FORMAT": "json", "LOG_LEVEL": "info"}).start()
    requests.get(instance.url + "/v1/health", timeout=5, headers={"Authorization": "Bearer not-logged-Zx9"})
    assert instance.stop() == 0
    entries = [json.loads(line) for line in instance.stderr.splitlines() if line.strip()]
    assert any(e["logger"].startswith("gunicorn") and "Listening at" in e["message"] for e in entries)
    assert [e["path"] for e in entries if e["logger"] == "scaivault.access"] == ["/v1/health"]
    assert "not-logged-Zx9" not in instance.stderr


def test_the_healthcheck_command_probes_the_local_instance(served, base_env):
    from tests.foundation_support import free_port, run_cli

    up = run_cli(["healthcheck"], {**base_env, "BIND_ADDRESS": f"0.0.0.0:{served.port}"})
    assert up.returncode == 0, up.stderr
    down = run_cli(["healthcheck", "--timeout", "1"], {**base_env, "BIND_ADDRESS": f"0.0.0.0:{free_port()}"})
    assert down.returncode == 1 and "health check failed" in down.stderr


def test_passwords_in_database_and_redis_urls_never_reach_the_served_output(base_env, database_url):
    # the database URL gets a password the trust-auth server ignores; Redis is unreachable
    with_password = database_url.replace("postgresql://postgres@", "postgresql://postgres:DbPa55XYZ@")
    env = {**base_env, "DATABASE_URL": with_password, "LOG_LEVEL": "debug",
           "REDIS_URL": f"redis://:RedisPa55XYZ@127.0.0.1:{free_port()}/0"}
    instance = ServedInstance(env).start()
    ready = requests.get(instance.url + "/v1/health/ready", timeout=10, headers=CLOSE)
    requests.get(instance.url + "/v1/health/detailed", timeout=10, headers=CLOSE)
    requests.get(instance.url + "/v1/nope", timeout=10, headers=CLOSE)
    instance.stop()
    assert ready.status_code == 200 and ready.json()["warnings"]["redis"] == "Connection refused"
    output = instance.stderr + ready.text
    assert "DbPa55XYZ" not in output and "RedisPa55XYZ" not in output


def test_a_request_gunicorn_cannot_parse_gets_the_json_envelope(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as raw:
        raw.sendall(b"GARBAGE <script>alert(1)</script>\r\n\r\n")
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400") and "application/json" in head
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_request" and error["request_id"] in head
    assert "<script>" not in reply.decode()


def test_serve_migrates_a_schema_that_is_behind_and_then_becomes_ready(base_env, fresh_database_url):
    import pg8000.native

    from scaivault.config import DatabaseURL
    from scaivault.migrate import load_migrations

    instance = ServedInstance({**base_env, "DATABASE_URL": fresh_database_url}).start()
    try:
        assert get_ready(instance.url).status_code == 200
    finally:
        assert instance.stop() == 0
    u = DatabaseURL.parse("DATABASE_URL", fresh_database_url)
    conn = pg8000.native.Connection(user=u.user, host=u.host, port=u.port, database=u.database)
    try:
        versions = [r[0] for r in conn.run("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        conn.close()
    assert versions == [m.version for m in load_migrations()]
