"""Subscriptions: owner-scoped path globs, long-poll woken by NOTIFY, ack, redelivery, buffer bound,
and never an event about a path the owner may not read (spec/30 section 6)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from scaivault.events.delivery import DeliveryPolicy
from scaivault.events.dispatcher import dispatch
from scaivault.events.pump import EventPump, pump_for
from scaivault.events.signing import verify
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.lifecycle_support import lifecycle_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, grant, new_tenant

SUB_SCOPES = ("secrets:read", "secrets:write", "subscriptions:read", "subscriptions:write")


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS, WEBHOOK_ALLOW_HTTP="true", WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")


@pytest.fixture
def runtime(app):
    return app.extensions["scaivault"]


@pytest.fixture(scope="module", autouse=True)
def _stop_the_pump(app):
    """A poll starts the process's event pump; stop it with the module (its database goes away)."""
    yield
    pump = app.extensions["scaivault"].__dict__.pop("event_pump", None)
    if pump is not None:
        pump.stop()


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(callers, tenant):
    return lifecycle_admin(callers, tenant)


@pytest.fixture
def reader(callers, admin, tenant):
    """An identity that may read app/** only."""
    caller = callers.user("sub-reader@x.example", tenant, scopes=SUB_SCOPES)
    grant(admin, caller.identity_id, [{"path_pattern": "app/**", "permissions": ["read"]}])
    return caller


def settle(db) -> None:
    """Dispatch until the outbox is empty (a background pump of this module may hold a batch)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dispatch(db)
        if not db.scalar("SELECT count(*) FROM events WHERE dispatched_at IS NULL"):
            return
        time.sleep(0.05)
    raise AssertionError("events stayed undispatched")


def subscribe(caller, paths=("**",), events=("secret.*",), **delivery) -> dict:
    resp = caller.post("/v1/subscriptions", json={"name": "s", "paths": list(paths), "events": list(events),
                                                  "delivery": {"type": "polling", **delivery}})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def poll(caller, sub, **query):
    """A poll; by default it waits up to 5 s, so a concurrent dispatcher's commit is awaited, not raced."""
    qs = "&".join(f"{k}={v}" for k, v in {"timeout": 5, **query}.items())
    resp = caller.get(f"/v1/subscriptions/{sub['id']}/poll?{qs}")
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_a_subscription_never_sees_a_path_outside_its_owners_policy(admin, reader, runtime):
    sub = subscribe(reader)
    assert sub["id"].startswith("sub_") and sub["identity_id"] == reader.identity_id and sub["status"] == "active"
    admin.put("/v1/secrets/app/visible", json={"data": {"v": "1"}})
    admin.put("/v1/secrets/other/hidden", json={"data": {"v": "1"}})
    admin.put("/v1/secrets/app/visible", json={"data": {"v": "2"}})
    settle(runtime.db)
    got = poll(reader, sub)
    assert [(e["event_type"], e["path"]) for e in got["events"]] == [("secret.created", "app/visible"),
                                                                      ("secret.updated", "app/visible")]
    assert got["has_more"] is False
    assert all(e["path"].startswith("app/") for e in poll(reader, sub)["events"])


def test_unacked_events_come_back_and_ack_removes_them(admin, reader, runtime):
    sub = subscribe(reader, paths=("app/acks/*",))
    admin.put("/v1/secrets/app/acks/a", json={"data": {"v": "1"}})
    admin.put("/v1/secrets/app/acks/b", json={"data": {"v": "1"}})
    settle(runtime.db)
    first = poll(reader, sub, max_events=1)
    assert len(first["events"]) == 1 and first["has_more"] is True
    again = poll(reader, sub)
    assert [e["event_id"] for e in again["events"]][0] == first["events"][0]["event_id"]
    after = poll(reader, sub, since_event_id=first["events"][0]["event_id"])
    assert [e["path"] for e in after["events"]] == ["app/acks/b"]
    ack = reader.post(f"/v1/subscriptions/{sub['id']}/ack", json={"event_ids": [e["event_id"] for e in again["events"]]})
    assert ack.status_code == 200 and ack.get_json()["acknowledged"] == 2
    assert poll(reader, sub, timeout=0)["events"] == []


def test_long_poll_wakes_as_soon_as_an_event_arrives(admin, reader, runtime, request):
    sub = subscribe(reader, paths=("app/live/**",))
    pump = pump_for(runtime)                     # the process's LISTEN connection and dispatcher
    request.addfinalizer(lambda: (pump.stop(), runtime.__dict__.pop("event_pump", None)))
    assert pump.listener.connected.wait(5)
    result: dict = {}

    def long_poll():
        started = time.monotonic()
        result["body"] = poll(reader, sub, timeout=20)
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=long_poll)
    t.start()
    time.sleep(0.5)
    written = time.monotonic()
    admin.put("/v1/secrets/app/live/x", json={"data": {"v": "1"}})
    t.join(25)
    assert [e["path"] for e in result["body"]["events"]] == ["app/live/x"]
    assert result["took"] < 3.0 and time.monotonic() - written < 2.5


def test_an_empty_long_poll_returns_at_its_timeout(reader):
    sub = subscribe(reader, paths=("app/nothing/*",))
    started = time.monotonic()
    body = poll(reader, sub, timeout=1)
    assert body == {"events": [], "has_more": False, "dropped_events": 0}
    assert 0.9 <= time.monotonic() - started < 3


def test_buffer_overflow_drops_the_oldest_and_counts_them(admin, reader, runtime):
    sub = subscribe(reader, paths=("app/buf/*",), buffer_size=2)
    for name in ("a", "b", "c"):
        admin.put(f"/v1/secrets/app/buf/{name}", json={"data": {"v": "1"}})
    settle(runtime.db)
    body = poll(reader, sub)
    assert [e["path"] for e in body["events"]] == ["app/buf/b", "app/buf/c"] and body["dropped_events"] == 1


def test_only_the_owner_polls_and_bad_input_is_refused(callers, admin, reader, tenant):
    sub = subscribe(reader)
    other = callers.user("other@x.example", tenant, scopes=SUB_SCOPES)
    resp = other.get(f"/v1/subscriptions/{sub['id']}/poll?timeout=0")
    assert resp.status_code == 403
    assert admin.get(f"/v1/subscriptions/{sub['id']}/poll?timeout=0").status_code == 403   # admins manage, never poll
    assert admin.get(f"/v1/subscriptions/{sub['id']}").status_code == 200
    assert other.get(f"/v1/subscriptions/{sub['id']}").status_code == 403
    bad = reader.post("/v1/subscriptions", json={"name": "b", "paths": ["a/**/**"], "events": ["secret.created"],
                                                 "delivery": {"type": "polling"}})
    assert bad.status_code == 400 and error_code(bad) == "invalid_glob"
    assert error_code(reader.get("/v1/subscriptions/sub_missing")) == "subscription_not_found"
    assert [s["id"] for s in reader.get("/v1/subscriptions").get_json()["data"]] == [sub["id"]]
    patched = reader.patch(f"/v1/subscriptions/{sub['id']}", json={"paths": ["app/x/*"]})
    assert patched.status_code == 200 and patched.get_json()["paths"] == ["app/x/*"]
    assert reader.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204


def test_push_subscriptions_are_signed_and_filtered_by_the_owners_access(admin, reader, runtime):
    receiver = WebhookReceiver().start()
    try:
        secret = "p" * 32
        resp = reader.post("/v1/subscriptions", json={
            "name": "push", "paths": ["**"], "events": ["secret.created"],
            "delivery": {"type": "webhook", "url": receiver.url, "secret": secret}})
        assert resp.status_code == 201, resp.get_json()
        assert resp.get_json()["delivery"] == {"type": "webhook", "url": receiver.url}
        admin.put("/v1/secrets/app/pushed", json={"data": {"v": "1"}})
        admin.put("/v1/secrets/other/withheld", json={"data": {"v": "1"}})
        EventPump(runtime, DeliveryPolicy(timeout=5)).run_once()
        assert receiver.wait_for(1)
        time.sleep(0.2)
        paths = []
        for r in receiver.requests:
            h = r["headers"]
            assert verify([secret], int(h["X-ScaiVault-Timestamp"]), r["body"], h["X-ScaiVault-Signature"], time.time())
            paths.append(json.loads(r["body"])["path"])
        assert paths == ["app/pushed"]
        assert all(not h["name"].startswith("subscription") for h in admin.get("/v1/webhooks").get_json()["webhooks"])
    finally:
        receiver.stop()


def test_secret_accessed_is_emitted_once_someone_listens(admin, reader, runtime, tenant):
    from scaivault.lifecycle.hooks import ACCESS_LISTENERS

    admin.put("/v1/secrets/app/read-me", json={"data": {"v": "1"}})
    sub = subscribe(reader, paths=("app/read-me",), events=("secret.accessed",))
    ACCESS_LISTENERS.invalidate()
    reader.get("/v1/secrets/app/read-me")
    settle(runtime.db)
    events = poll(reader, sub)["events"]
    assert [e["event_type"] for e in events] == ["secret.accessed"] and events[0]["identity_id"] == reader.identity_id


def test_listing_needs_the_subscriptions_scope(callers, tenant):
    nobody = callers.user("noscope@x.example", tenant, scopes=("secrets:read",))
    resp = nobody.get("/v1/subscriptions")
    assert resp.status_code == 403 and error_code(resp) == "insufficient_scope"


def test_a_push_subscription_whose_receiver_keeps_failing_is_disabled_and_revived_by_a_new_url(admin, reader, runtime):
    background = runtime.__dict__.pop("event_pump", None)      # a poll of this module started it: its own
    if background is not None:                                  # retry schedule would race this test's
        background.stop()
        for thread in background._threads:
            thread.join(5)
    dead, alive = WebhookReceiver().start(), WebhookReceiver().start()
    dead.responses = [500]
    try:
        sub = reader.post("/v1/subscriptions", json={"name": "p", "paths": ["app/**"], "events": ["secret.created"],
                                                     "delivery": {"type": "webhook", "url": dead.url, "secret": "q" * 32}})
        sub = sub.get_json()
        admin.put("/v1/secrets/app/dies", json={"data": {"v": "1"}})
        p = EventPump(runtime, DeliveryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.02,
                                              disable_after_failures=2, disable_after_seconds=0))
        for _ in range(20):
            p.run_once()
            time.sleep(0.03)
        assert reader.get(f"/v1/subscriptions/{sub['id']}").get_json()["status"] == "disabled"
        revived = reader.patch(f"/v1/subscriptions/{sub['id']}", json={"delivery": {"url": alive.url}})
        assert revived.status_code == 200 and revived.get_json()["status"] == "active"
        admin.put("/v1/secrets/app/lives", json={"data": {"v": "1"}})
        p.run_once()
        assert alive.wait_for(1) and json.loads(alive.requests[0]["body"])["path"] == "app/lives"
    finally:
        dead.stop()
        alive.stop()
