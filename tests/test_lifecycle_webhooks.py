"""Webhooks: endpoints, signed deliveries, retries, auto-disable, secret rotation, outbound safety,
and at-least-once delivery across a kill -9 of the worker (spec/30 section 5)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scaivault.events.delivery import DeliveryPolicy
from scaivault.events.pump import EventPump
from scaivault.events.signing import verify
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.lifecycle_support import events_of, lifecycle_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant

SECRET = "s" * 40
LOCAL = {"RATE_LIMITS": HIGH_RATE_LIMITS, "WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(**LOCAL)


@pytest.fixture
def runtime(app):
    return app.extensions["scaivault"]


@pytest.fixture
def receiver():
    r = WebhookReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(app, scaikey, tenant):
    return lifecycle_admin(Callers(scaikey, app.test_client()), tenant)


def pump(runtime, **policy) -> EventPump:
    return EventPump(runtime, DeliveryPolicy(**{"backoff_base": 0.01, "backoff_max": 0.02, "timeout": 5, **policy}))


def make_hook(admin, url, events=("secret.*",), **extra) -> dict:
    resp = admin.post("/v1/webhooks", json={"name": "h", "url": url, "secret": SECRET, "events": list(events), **extra})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def assert_signed(request, secrets) -> dict:
    h = request["headers"]
    assert h["User-Agent"] == "ScaiVault-Webhook/1.0"
    assert verify(secrets, int(h["X-ScaiVault-Timestamp"]), request["body"], h["X-ScaiVault-Signature"], time.time())
    body = json.loads(request["body"])
    assert h["X-ScaiVault-Event-Id"] == body["event_id"] and h["X-ScaiVault-Event-Type"] == body["event_type"]
    return body


def test_a_write_is_delivered_signed_with_the_envelope(admin, runtime, receiver, tenant):
    hook = make_hook(admin, receiver.url)
    assert "secret" not in hook and hook["status"] == "healthy" and hook["id"].startswith("wh_")
    sealed = runtime.db.scalar("SELECT sealed_secret FROM webhooks WHERE id = :id", id=hook["id"])
    assert SECRET.encode() not in bytes(sealed)
    admin.put("/v1/secrets/hooked/a", json={"data": {"v": "1"}})
    pump(runtime).run_once()
    assert receiver.wait_for(1)
    body = assert_signed(receiver.requests[0], [SECRET])
    assert body["event_type"] == "secret.created" and body["path"] == "hooked/a" and body["tenant_id"] == tenant
    assert not verify(["wrong-secret-wrong-secret"], int(receiver.requests[0]["headers"]["X-ScaiVault-Timestamp"]),
                      receiver.requests[0]["body"], receiver.requests[0]["headers"]["X-ScaiVault-Signature"], time.time())
    log = admin.get(f"/v1/webhooks/{hook['id']}/deliveries").get_json()["deliveries"]
    assert log[0]["status"] == "success" and log[0]["response_code"] == 200 and log[0]["event_id"] == body["event_id"]
    detail = admin.get(f"/v1/webhooks/{hook['id']}").get_json()
    assert detail["statistics"]["deliveries_24h"] == 1 and detail["last_delivery"]["status"] == "success"
    assert "secret" not in detail and "sealed_secret" not in detail


def test_signatures_verify_across_a_signing_secret_rotation(admin, runtime, receiver):
    hook = make_hook(admin, receiver.url)
    admin.put("/v1/secrets/rot/one", json={"data": {"v": "1"}})
    pump(runtime).run_once()
    new_secret = "n" * 40
    resp = admin.patch(f"/v1/webhooks/{hook['id']}", json={"secret": new_secret, "previous_secret_ttl": "24h"})
    assert resp.status_code == 200 and "secret" not in resp.get_json() and resp.get_json()["previous_secret_expires_at"]
    admin.put("/v1/secrets/rot/one", json={"data": {"v": "2"}})
    pump(runtime).run_once()
    assert receiver.wait_for(2)
    assert_signed(receiver.requests[0], [SECRET])
    second = receiver.requests[1]
    assert_signed(second, [SECRET, new_secret])         # a receiver accepting either during the overlap
    h = second["headers"]
    assert not verify([SECRET], int(h["X-ScaiVault-Timestamp"]), second["body"], h["X-ScaiVault-Signature"], time.time())


def test_failures_retry_with_backoff_and_a_fresh_timestamp_then_succeed(admin, runtime, receiver):
    receiver.responses = [500, 503, 200]
    hook = make_hook(admin, receiver.url)
    admin.put("/v1/secrets/retry/a", json={"data": {"v": "1"}})
    p = pump(runtime, backoff_base=0.4, backoff_max=0.4)    # the retry waits 0.2-0.4 s
    p.run_once()
    row = runtime.db.one("SELECT * FROM webhook_deliveries WHERE webhook_id = :w", w=hook["id"])
    assert row["status"] == "pending" and row["attempts"] == 1 and row["response_code"] == 500
    assert row["next_attempt_at"] > row["last_attempt_at"]
    for _ in range(40):
        time.sleep(0.1)
        p.run_once()
        if len(receiver.requests) >= 3:
            break
    assert len(receiver.requests) == 3
    ids = {r["headers"]["X-ScaiVault-Event-Id"] for r in receiver.requests}
    assert len(ids) == 1
    for r in receiver.requests:
        assert_signed(r, [SECRET])
    row = runtime.db.one("SELECT * FROM webhook_deliveries WHERE webhook_id = :w", w=hook["id"])
    assert row["status"] == "success" and row["attempts"] == 3
    assert admin.get(f"/v1/webhooks/{hook['id']}").get_json()["status"] == "healthy"
    audit = runtime.db.query("SELECT success FROM audit_log WHERE action = 'webhook_delivery' "
                             "AND extra_data->>'webhook_id' = :w ORDER BY ts", w=hook["id"])
    assert [a["success"] for a in audit] == [False, False, True]


def test_sustained_failure_disables_the_webhook_with_an_event(admin, runtime, receiver, tenant):
    receiver.responses = [500]
    hook = make_hook(admin, receiver.url)
    admin.put("/v1/secrets/dead/a", json={"data": {"v": "1"}})
    p = pump(runtime, max_attempts=3, disable_after_failures=3, disable_after_seconds=0)
    for _ in range(30):
        p.run_once()
        time.sleep(0.03)
    detail = admin.get(f"/v1/webhooks/{hook['id']}").get_json()
    assert detail["status"] == "disabled" and detail["enabled"] is False
    assert events_of(runtime.db, tenant, "webhook.disabled")[0]["data"]["webhook_id"] == hook["id"]
    failed = admin.get(f"/v1/webhooks/{hook['id']}/deliveries?status=failed").get_json()["deliveries"]
    assert failed and failed[0]["attempts"] == 3
    again = admin.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True}).get_json()
    assert again["status"] == "healthy"


def test_test_endpoint_and_redeliver(admin, runtime, receiver):
    hook = make_hook(admin, receiver.url)
    resp = admin.post(f"/v1/webhooks/{hook['id']}/test")
    assert resp.status_code == 200, resp.get_json()
    out = resp.get_json()
    assert out["status"] == "success" and out["response_code"] == 200 and out["delivery_id"].startswith("del_")
    assert isinstance(out["duration_ms"], int)
    body = assert_signed(receiver.requests[0], [SECRET])
    assert body["event_type"] == "webhook.test"
    again = admin.post(f"/v1/webhooks/{hook['id']}/deliveries/{out['delivery_id']}/redeliver")
    assert again.status_code == 202 and again.get_json()["redelivery_of"] == out["delivery_id"]
    pump(runtime).run_once()
    assert receiver.wait_for(2)
    assert json.loads(receiver.requests[1]["body"])["event_id"] == body["event_id"]
    missing = admin.post(f"/v1/webhooks/{hook['id']}/deliveries/del_nope/redeliver")
    assert missing.status_code == 404


def test_rotation_events_reach_the_policys_webhooks(admin, runtime, receiver):
    hook = make_hook(admin, receiver.url, events=("policy.created",))
    p = admin.post("/v1/rotation/policies", json={"name": "w", "interval": "1d", "auto_generate": True,
                                                  "webhook_ids": [hook["id"]]}).get_json()
    admin.put("/v1/secrets/rw/a", json={"data": {"v": "1"}, "options": {"rotation_policy_id": p["id"]}})
    admin.post("/v1/secrets/rw/a:rotate")
    pump(runtime).run_once()
    types = sorted(json.loads(r["body"])["event_type"] for r in receiver.requests)
    assert types == ["rotation.completed", "secret.rotated"]
    bad = admin.post("/v1/rotation/policies", json={"name": "w2", "interval": "1d", "webhook_ids": ["wh_nope"]})
    assert bad.status_code == 404 and error_code(bad) == "webhook_not_found"


def test_webhook_crud_and_validation(admin):
    assert admin.post("/v1/webhooks", json={"name": "x", "url": "https://example.com/h", "secret": "short",
                                            "events": ["secret.created"]}).status_code == 422
    assert admin.post("/v1/webhooks", json={"name": "x", "url": "https://example.com/h", "secret": SECRET,
                                            "events": ["nope.event"]}).status_code == 422
    hook = make_hook(admin, "https://93.184.215.14/hook", events=("secret.created",))
    assert [h["id"] for h in admin.get("/v1/webhooks").get_json()["webhooks"]] == [hook["id"]]
    patched = admin.patch(f"/v1/webhooks/{hook['id']}", json={"events": ["secret.*"], "filters": {"path_prefix": "a/"}})
    assert patched.get_json()["events"] == ["secret.*"] and patched.get_json()["filters"] == {"path_prefix": "a/"}
    assert admin.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert error_code(admin.get(f"/v1/webhooks/{hook['id']}")) == "webhook_not_found"


@pytest.mark.parametrize("url", ["http://93.184.215.14/h", "https://127.0.0.1/h", "https://10.1.2.3/h",
                                 "https://169.254.169.254/latest", "https://[::1]/h", "https://localhost/h",
                                 "ftp://example.com/h", "https://user:pw@example.com/h"])
def test_refused_destinations_are_400_invalid_webhook_url_by_default(make_app, scaikey, url):
    strict = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    admin = lifecycle_admin(Callers(scaikey, strict.test_client()), new_tenant())
    resp = admin.post("/v1/webhooks", json={"name": "x", "url": url, "secret": SECRET, "events": ["secret.created"]})
    assert resp.status_code == 400 and error_code(resp) == "invalid_webhook_url"


def test_the_destination_is_checked_again_at_delivery_time(admin, runtime, receiver):
    hook = make_hook(admin, receiver.url)
    admin.put("/v1/secrets/ssrf/a", json={"data": {"v": "1"}})
    strict = runtime.settings.replace(webhook_allowed_networks=())
    p = pump(runtime, max_attempts=1)
    p.worker.settings = strict
    p.run_once()
    assert receiver.requests == []
    row = runtime.db.one("SELECT * FROM webhook_deliveries WHERE webhook_id = :w", w=hook["id"])
    assert row["status"] == "failed" and row["error"].startswith("refused_destination")


def test_redirects_are_not_followed(admin, runtime):
    import http.server
    import threading

    hits = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            hits.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = make_hook(admin, f"http://127.0.0.1:{server.server_address[1]}/start")
        admin.put("/v1/secrets/redir/a", json={"data": {"v": "1"}})
        pump(runtime, max_attempts=1).run_once()
        assert hits == ["/start"]
        row = runtime.db.one("SELECT * FROM webhook_deliveries WHERE webhook_id = :w", w=hook["id"])
        assert row["status"] == "failed" and row["response_code"] == 307
    finally:
        server.shutdown()
        server.server_close()


WORKER = """
import sys
from scaivault.config import load_settings
from scaivault.runtime import Runtime
from scaivault.events.delivery import DeliveryPolicy
from scaivault.events.pump import EventPump
import os, time
pump = EventPump(Runtime(load_settings(os.environ)), DeliveryPolicy(lease=2.0, timeout=60))
print("ready", flush=True)
while True:
    pump.run_once()
    time.sleep(0.1)
"""


def test_kill_9_of_the_worker_mid_delivery_loses_no_event(admin, runtime, receiver, base_env, tenant):
    hook = make_hook(admin, receiver.url)
    receiver.stall = 30.0                      # the first attempt hangs: the worker is killed inside it
    env = {**os.environ, **base_env, **LOCAL}
    worker = subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert worker.stdout.readline().strip() == b"ready"
        admin.put("/v1/secrets/killed/a", json={"data": {"v": "1"}})
        assert receiver.wait_for(1, timeout=20)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    event_id = receiver.requests[0]["headers"]["X-ScaiVault-Event-Id"]
    time.sleep(2.2)                            # the dead worker's lease lapses
    pump(runtime).run_once()
    assert receiver.wait_for(2)
    assert [r["headers"]["X-ScaiVault-Event-Id"] for r in receiver.requests] == [event_id, event_id]
    row = runtime.db.one("SELECT * FROM webhook_deliveries WHERE webhook_id = :w", w=hook["id"])
    assert row["status"] == "success" and row["attempts"] == 2
    assert [e["event_id"] for e in events_of(runtime.db, tenant, "secret.created")] == [event_id]


def test_managing_webhooks_and_rotation_needs_an_admin_role(app, scaikey, tenant, receiver):
    from tests.lifecycle_support import LIFECYCLE_SCOPES

    plain = Callers(scaikey, app.test_client()).user("plain@x.example", tenant, scopes=LIFECYCLE_SCOPES)
    for method, url in (("GET", "/v1/webhooks"), ("GET", "/v1/rotation/policies"), ("GET", "/v1/secret-policies"),
                        ("GET", "/v1/rotation/due")):
        resp = plain.call(method, url)
        assert resp.status_code == 403 and error_code(resp) == "access_denied", url
    resp = plain.post("/v1/webhooks", json={"name": "x", "url": receiver.url, "secret": SECRET, "events": ["secret.created"]})
    assert resp.status_code == 403


def test_one_tenants_slow_receiver_never_holds_up_another_tenants_deliveries(app, scaikey, runtime):
    slow, fast = WebhookReceiver().start(), WebhookReceiver().start()
    slow.stall_all = 3.0
    try:
        callers = Callers(scaikey, app.test_client())
        a, b = lifecycle_admin(callers, new_tenant()), lifecycle_admin(callers, new_tenant())
        make_hook(a, slow.url)
        make_hook(b, fast.url)
        for i in range(6):
            a.put(f"/v1/secrets/slow/s{i}", json={"data": {"v": "1"}})
        b.put("/v1/secrets/fast/s", json={"data": {"v": "1"}})
        p = pump(runtime, concurrency=4, tenant_inflight=2, timeout=10)
        from scaivault.events.dispatcher import dispatch

        while dispatch(runtime.db):
            pass
        started = time.monotonic()
        p.worker.run_once(wait=False)
        p.worker.run_once(wait=False)
        assert fast.wait_for(1, timeout=2.5) and time.monotonic() - started < 2.5
        inflight = runtime.db.scalar("""SELECT count(*) FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                                         WHERE w.url = :u AND d.locked_until > now() AND d.status = 'pending'""", u=slow.url)
        assert inflight <= 2
        deadline = time.monotonic() + 15
        while p.worker.free_slots() < 4 and time.monotonic() < deadline:   # let the slow attempts finish
            time.sleep(0.1)
    finally:
        slow.stop()
        fast.stop()


def test_deliveries_need_no_redis(make_app, scaikey, receiver):
    """The outbox and delivery rows are the queue: with Redis unreachable, events still arrive."""
    app = make_app(**LOCAL, REDIS_URL="redis://127.0.0.1:1/0")
    runtime = app.extensions["scaivault"]
    admin = lifecycle_admin(Callers(scaikey, app.test_client()), new_tenant())
    make_hook(admin, receiver.url)
    assert admin.put("/v1/secrets/noredis/a", json={"data": {"v": "1"}}).status_code == 201
    pump(runtime).run_once()
    assert receiver.wait_for(1)
    assert_signed(receiver.requests[0], [SECRET])
