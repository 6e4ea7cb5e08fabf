"""Library patches (scaivault/patches.py): applied on the versions they were written for, skipped
with a warning anywhere else, and the declared dependency ranges match what was tested."""
from __future__ import annotations

import configparser
import logging
import re
import socket
from pathlib import Path

import pytest

from scaivault import patches

from tests.foundation_support import ServedInstance, get_ready

ROOT = Path(__file__).resolve().parent.parent


def raw_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


@pytest.mark.slow
def test_a_served_answer_begins_with_its_status_line_on_the_installed_gunicorn(base_env):
    instance = ServedInstance(base_env).start()
    try:
        assert get_ready(instance.url).status_code == 200
        answer = raw_get(instance.port, "/v1/health")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer[:80]
        assert b'"status"' in body
        missing = raw_get(instance.port, "/v1/nothing-here")
        assert missing.startswith(b"HTTP/1.1 404") and b'"not_found"' in missing
    finally:
        instance.stop()


def test_an_untested_gunicorn_keeps_its_own_response_class_and_warns(monkeypatch, caplog):
    from gunicorn.http import wsgi

    monkeypatch.setattr(wsgi, "Response", wsgi.Response)           # restored afterwards
    if getattr(wsgi.Response, "one_send", False):
        monkeypatch.setattr(wsgi, "Response", wsgi.Response.__mro__[1])
    original = wsgi.Response
    real = patches.installed_version
    monkeypatch.setattr(patches, "installed_version", lambda d: "99.0" if d == "gunicorn" else real(d))
    monkeypatch.setattr(patches, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="scaivault.patches"):
        assert patches.gunicorn_one_send_responses() is False
    assert wsgi.Response is original
    assert any(r.getMessage().startswith("library patch not applied") and r.patch == "gunicorn.one_send_response"
               for r in caplog.records)


def test_a_gunicorn_without_emit_body_keeps_two_sends(monkeypatch):
    """gunicorn 26.1 has no Response._emit_body: patched anyway, its body went out before the head."""
    from gunicorn.http import wsgi

    monkeypatch.setattr(wsgi, "Response", wsgi.Response)
    if getattr(wsgi.Response, "one_send", False):
        monkeypatch.setattr(wsgi, "Response", wsgi.Response.__mro__[1])
    base = wsgi.Response
    old_style = type("OldResponse", (base,), {"_emit_body": None})
    monkeypatch.setattr(wsgi, "Response", old_style)
    monkeypatch.setattr(patches, "installed_version", lambda d: "27.0.1")
    assert patches.gunicorn_one_send_responses() is False
    assert wsgi.Response is old_style


def test_an_untested_pg8000_gives_no_socket_and_checkout_pings_instead(monkeypatch):
    from scaivault import db

    monkeypatch.setattr(patches, "installed_version", lambda d: "1.40.0")
    monkeypatch.setitem(patches._applied, "pg8000.socket", None)
    monkeypatch.setattr(patches, "_applied", {})

    class Conn:
        _usock = object()

    assert patches.pg8000_socket(Conn()) is None
    assert db._looks_closed(Conn()) is False


def test_the_declared_ranges_of_patched_libraries_are_the_tested_ranges():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requirements = {}
    lines = cfg["options"]["install_requires"].split("\n") + cfg["options.extras_require"]["server"].split("\n")
    for line in lines:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(\[.*\])?(.*)", line)
        if m and m.group(1):
            requirements[m.group(1).lower()] = m.group(3).strip()
    for name, (distribution, lowest, first_untested) in patches.TESTED.items():
        spec = requirements[distribution]
        upper = re.search(r"<([\d.]+)", spec)
        lower = re.search(r">=([\d.]+)", spec)
        assert upper, f"{distribution} needs an upper bound: patch {name} depends on its internals"
        assert patches._version_tuple(upper.group(1)) <= patches._version_tuple(first_untested), name
        assert lower and patches._version_tuple(lower.group(1)) >= patches._version_tuple("0"), name


def test_the_patches_that_apply_here_are_reported(app):
    applied = patches.status()
    assert applied.get("flask_limiter.no_request_hooks") is patches.supported("flask_limiter.no_request_hooks")
    assert applied.get("pg8000.statement_cache") is patches.supported("pg8000.statement_cache")


@pytest.mark.slow
def test_an_overlong_request_line_gets_the_json_envelope_from_the_pywsgi_worker(base_env):
    instance = ServedInstance(base_env).start()
    try:
        assert get_ready(instance.url).status_code == 200
        answer = raw_get(instance.port, "/v1/" + "a" * 20000)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] in (b"400", b"414") and b"application/json" in head, answer[:200]
        assert b'"error"' in body and b"aaaa" not in answer
    finally:
        instance.stop()


def test_an_untested_gevent_serves_with_gunicorns_gevent_worker(monkeypatch):
    real = patches.installed_version
    monkeypatch.setattr(patches, "installed_version", lambda d: "99.0" if d == "gevent" else real(d))
    monkeypatch.setattr(patches, "_applied", {})
    assert patches.server_worker_class() == "gevent"
    monkeypatch.setattr(patches, "installed_version", real)
    if patches.supported("gevent.pywsgi_json_errors"):
        assert patches.server_worker_class() == "scaivault.patches.ScaiVaultPyWSGIWorker"


@pytest.mark.parametrize("enabled", [True, False])
def test_the_pywsgi_handler_builds_gunicorns_access_record_only_when_that_log_is_on(enabled):
    from gunicorn.workers.ggevent import PyWSGIHandler

    calls = []

    class Log:
        access_log_enabled = enabled

        def access(self, resp, req, environ, request_time):
            calls.append((resp.status, environ["PATH_INFO"]))

    handler = patches.ScaiVaultPyWSGIWorker.wsgi_handler.__new__(patches.ScaiVaultPyWSGIWorker.wsgi_handler)
    assert isinstance(handler, PyWSGIHandler)
    handler.server = type("Server", (), {"log": Log()})()
    handler.time_start, handler.time_finish = 1.0, 1.5
    handler.status, handler.response_headers, handler.response_length = b"200 OK", [], 2
    handler.environ = {"PATH_INFO": "/v1/health"}
    handler.log_request()
    assert calls == ([("200 OK", "/v1/health")] if enabled else [])
