"""A write NOTIFYs the event dispatchers only when its tenant has a consumer; its events are in the
outbox either way, already dispatched where nobody listens (migrations 0071, 0161)."""
from __future__ import annotations

import pg8000.native

from scaivault.config import DatabaseURL
from scaivault.events.dispatcher import dispatch
from tests.lifecycle_support import events_of, lifecycle_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant


def pending_notifications(listener) -> list:
    listener.run("SELECT 1")        # reads the NotificationResponse messages that arrived meanwhile
    seen = list(listener.notifications)
    listener.notifications.clear()
    return [n for n in seen if n[1] == "scaivault_events"]


def test_a_write_notifies_the_dispatchers_only_when_its_tenant_has_a_consumer(make_app, scaikey, database_url):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    db = app.extensions["scaivault"].db
    callers = Callers(scaikey, app.test_client())
    quiet, busy = new_tenant(), new_tenant()
    quiet_admin, busy_admin = lifecycle_admin(callers, quiet), lifecycle_admin(callers, busy)
    resp = busy_admin.post("/v1/subscriptions", json={"name": "s", "paths": ["**"], "events": ["secret.*"],
                                                      "delivery": {"type": "polling"}})
    assert resp.status_code == 201, resp.get_json()
    url = DatabaseURL.parse("DATABASE_URL", database_url)
    listener = pg8000.native.Connection(user=url.user or "postgres", host=url.host, port=url.port,
                                        database=url.database)
    try:
        listener.run("LISTEN scaivault_events")
        pending_notifications(listener)
        assert quiet_admin.put("/v1/secrets/app/one", json={"data": {"v": 1}}).status_code == 201
        assert pending_notifications(listener) == []
        assert busy_admin.put("/v1/secrets/app/one", json={"data": {"v": 1}}).status_code == 201
        assert len(pending_notifications(listener)) == 1
    finally:
        listener.close()
    assert [e["event_type"] for e in events_of(db, quiet)] == ["secret.created"]     # in the outbox all the same
    # migration 0161: nobody in the quiet tenant listens, so no sweep has anything to do with its row
    assert db.scalar("SELECT count(*) FROM events WHERE tenant_id = :t AND dispatched_at IS NULL", t=quiet) == 0
    assert db.scalar("SELECT count(*) FROM events WHERE tenant_id = :t AND dispatched_at IS NULL", t=busy) == 1
    while dispatch(db):
        pass
    assert db.scalar("SELECT count(*) FROM events WHERE tenant_id = :t AND dispatched_at IS NULL", t=quiet) == 0
