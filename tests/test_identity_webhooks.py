"""ScaiKey's webhook receiver: spec/15 section 4.3 signatures, idempotency, every cache event of 4.5."""
from __future__ import annotations

import secrets
import threading
import time

import pytest
from werkzeug.serving import make_server

URL = "/v1/identity/webhooks/scaikey"


@pytest.fixture
def db(app):
    return app.extensions["scaivault"].db


def _deliver(client, scaikey, event_type, data, **kw):
    body, headers = scaikey.build_webhook(event_type, data, **kw)
    return client.post(URL, data=body, headers=headers)


def _uid(prefix):
    return f"{prefix}_{secrets.token_hex(4)}"


def test_a_signed_user_created_event_is_applied(client, scaikey, db):
    uid = _uid("usr")
    resp = _deliver(client, scaikey, "user.created", {"id": uid, "email": f"{uid}@acme.example", "first_name": "Ann",
                                                     "last_name": "Lee", "status": "ACTIVE",
                                                     "tenant": {"id": "tnt_wh", "name": "WH", "slug": "wh"}},
                    tenant_id="tnt_wh", partner_id="ptn_wh")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "applied"
    row = db.one("SELECT * FROM identity_users WHERE id = :id", id=uid)
    assert row["email"] == f"{uid}@acme.example" and row["tenant_id"] == "tnt_wh" and row["display_name"] == "Ann Lee"


def test_a_bad_signature_is_refused_and_nothing_is_applied(client, scaikey, db):
    uid = _uid("usr")
    body, headers = scaikey.build_webhook("user.created", {"id": uid, "email": "x@y.z"}, secret="not-the-secret")
    resp = client.post(URL, data=body, headers=headers)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_signature"
    assert db.one("SELECT id FROM identity_users WHERE id = :id", id=uid) is None


def test_a_body_changed_after_signing_is_refused(client, scaikey, db):
    uid = _uid("usr")
    body, headers = scaikey.build_webhook("user.created", {"id": uid, "email": "a@b.c"})
    resp = client.post(URL, data=body.replace(b"a@b.c", b"e@b.c"), headers=headers)
    assert resp.status_code == 400
    assert db.one("SELECT id FROM identity_users WHERE id = :id", id=uid) is None


def test_a_reserialised_body_with_the_same_content_is_refused(client, scaikey):
    body, headers = scaikey.build_webhook("user.updated", {"id": "usr_reser", "email": "r@b.c"})
    spaced = body.replace(b",", b", ")
    assert client.post(URL, data=spaced, headers=headers).status_code == 400


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_a_replay_outside_the_five_minute_window_is_refused(client, scaikey, db, age):
    uid = _uid("usr")
    resp = _deliver(client, scaikey, "user.created", {"id": uid, "email": "old@b.c"}, timestamp=int(time.time()) - age)
    assert resp.status_code == 400
    assert "window" in resp.get_json()["error"]["message"]
    assert db.one("SELECT id FROM identity_users WHERE id = :id", id=uid) is None


@pytest.mark.parametrize("signature", ["", "v1=abc", "t=abc,v1=abc", "t=1700000000", "garbage"])
def test_a_missing_or_malformed_signature_header_is_refused(client, scaikey, signature):
    body, headers = scaikey.build_webhook("user.created", {"id": "usr_mal"})
    headers["X-ScaiKey-Signature"] = signature
    resp = client.post(URL, data=body, headers=headers)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_signature"


def test_a_timestamp_header_differing_from_the_signed_one_is_refused(client, scaikey):
    body, headers = scaikey.build_webhook("user.created", {"id": "usr_ts"})
    headers["X-ScaiKey-Timestamp"] = str(int(headers["X-ScaiKey-Timestamp"]) + 1)
    assert client.post(URL, data=body, headers=headers).status_code == 400


def test_any_of_several_v1_signatures_may_match_and_header_names_are_case_insensitive(client, scaikey, db):
    uid = _uid("usr")
    body, headers = scaikey.build_webhook("user.created", {"id": uid, "email": "multi@b.c"})
    signature = headers.pop("X-ScaiKey-Signature")
    t, v1 = signature.split(",")
    headers["x-scaikey-signature"] = f"{t},v1={'0' * 64},{v1}"
    assert client.post(URL, data=body, headers=headers).status_code == 200
    assert db.one("SELECT id FROM identity_users WHERE id = :id", id=uid) is not None


def test_a_duplicate_event_is_applied_once(client, scaikey, db):
    gid, uid = _uid("grp"), _uid("usr")
    _deliver(client, scaikey, "group.created", {"id": gid, "name": "dup-group"}, tenant_id="tnt_wh")
    body, headers = scaikey.build_webhook("group.member_added", {"group_id": gid, "user_id": uid}, tenant_id="tnt_wh")
    first = client.post(URL, data=body, headers=headers)
    assert first.get_json()["status"] == "applied"
    # remove the membership out of band; a redelivery of the same event must not bring it back
    db.execute("DELETE FROM identity_group_members WHERE group_id = :g", g=gid)
    second = client.post(URL, data=body, headers=headers)
    assert second.status_code == 200 and second.get_json()["status"] == "duplicate"
    assert db.one("SELECT * FROM identity_group_members WHERE group_id = :g", g=gid) is None


def test_unknown_event_types_are_acknowledged_and_ignored(client, scaikey):
    resp = _deliver(client, scaikey, "session.created", {"id": "ses_1"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "ignored"


def test_a_signed_body_that_is_not_json_is_invalid_request(client, scaikey):
    body = b"not json"
    headers = {"X-ScaiKey-Signature": scaikey.sign(body), "Content-Type": "application/json"}
    resp = client.post(URL, data=body, headers=headers)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_request"


def test_every_cache_event_type_is_applied(client, scaikey, db):
    p, t, u, g1, g2 = _uid("ptn"), _uid("tnt"), _uid("usr"), _uid("grp"), _uid("grp")
    steps = [
        ("partner.created", {"id": p, "name": "P", "slug": "p", "status": "ACTIVE"}, {}),
        ("partner.updated", {"id": p, "name": "P2", "slug": "p", "status": "SUSPENDED"}, {}),
        ("tenant.created", {"id": t, "name": "T", "slug": "t", "status": "ACTIVE"}, {"partner_id": p}),
        ("tenant.updated", {"id": t, "name": "T2", "slug": "t", "status": "ACTIVE"}, {"partner_id": p}),
        ("user.created", {"id": u, "email": f"{u}@x.y", "status": "ACTIVE"}, {"tenant_id": t}),
        ("user.updated", {"id": u, "email": f"{u}@x.y", "first_name": "Neo", "status": "ACTIVE"}, {"tenant_id": t}),
        ("user.mfa_enabled", {"id": u}, {"tenant_id": t}),
        ("user.password_changed", {"id": u}, {"tenant_id": t}),
        ("group.created", {"id": g1, "name": "outer"}, {"tenant_id": t}),
        ("group.created", {"id": g2, "name": "inner"}, {"tenant_id": t}),
        ("group.updated", {"id": g2, "name": "inner-renamed"}, {"tenant_id": t}),
        ("group.member_added", {"group_id": g2, "user_id": u}, {"tenant_id": t}),
        ("group_membership.added", {"group_id": g1, "member_id": g2, "member_type": "group"}, {"tenant_id": t}),
        ("application.created", {"id": _uid("app"), "client_id": _uid("cli"), "name": "reporting"}, {"tenant_id": t}),
        ("application.user_assigned", {"id": _uid("app"), "user_id": u}, {"tenant_id": t}),
    ]
    for event_type, data, kw in steps:
        resp = _deliver(client, scaikey, event_type, data, **kw)
        assert resp.status_code == 200, (event_type, resp.get_json())
    assert db.one("SELECT name, status FROM identity_partners WHERE id = :id", id=p) == {"name": "P2", "status": "SUSPENDED"}
    assert db.one("SELECT partner_id, name FROM identity_tenants WHERE id = :id", id=t) == {"partner_id": p, "name": "T2"}
    user = db.one("SELECT * FROM identity_users WHERE id = :id", id=u)
    assert user["first_name"] == "Neo" and user["mfa_enabled"] is True and user["tenant_id"] == t
    from scaivault.identity import store

    with db.session() as s:
        assert [x["name"] for x in store.groups_of_user(s, u)] == ["inner-renamed", "outer"]
    for event_type, data in [("user.suspended", {"id": u}), ("user.mfa_disabled", {"id": u})]:
        assert _deliver(client, scaikey, event_type, data).status_code == 200
    user = db.one("SELECT status, mfa_enabled FROM identity_users WHERE id = :id", id=u)
    assert user == {"status": "SUSPENDED", "mfa_enabled": False}
    _deliver(client, scaikey, "user.activated", {"id": u})
    assert db.scalar("SELECT status FROM identity_users WHERE id = :id", id=u) == "ACTIVE"
    _deliver(client, scaikey, "group_membership.removed", {"group_id": g1, "member_id": g2, "member_type": "group"})
    _deliver(client, scaikey, "group.member_removed", {"group_id": g2, "user_id": u})
    with db.session() as s:
        assert store.groups_of_user(s, u) == []
    _deliver(client, scaikey, "group.deleted", {"id": g1})
    _deliver(client, scaikey, "user.deleted", {"id": u})
    _deliver(client, scaikey, "tenant.deleted", {"id": t})
    _deliver(client, scaikey, "partner.deleted", {"id": p})
    for table, oid in (("identity_groups", g1), ("identity_users", u), ("identity_tenants", t), ("identity_partners", p)):
        assert db.scalar(f"SELECT deleted_at IS NOT NULL FROM {table} WHERE id = :id", id=oid) is True


def test_a_suspended_user_loses_access_at_once_through_the_webhook(client, scaikey, auth):
    uid = _uid("usr")
    _deliver(client, scaikey, "user.created", {"id": uid, "email": f"{uid}@x.y", "status": "ACTIVE"}, tenant_id="tnt_wh")
    token = scaikey.mint(sub=uid, tenant_id="tnt_wh")
    assert client.get("/v1/auth/whoami", headers=auth(token)).status_code == 200
    _deliver(client, scaikey, "user.suspended", {"id": uid})
    resp = client.get("/v1/auth/whoami", headers=auth(token))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"


def test_group_membership_from_the_cache_feeds_the_identity_groups(client, scaikey, auth):
    uid, gid = _uid("usr"), _uid("grp")
    _deliver(client, scaikey, "user.created", {"id": uid, "email": f"{uid}@x.y"}, tenant_id="tnt_wh")
    _deliver(client, scaikey, "group.created", {"id": gid, "name": "sre"}, tenant_id="tnt_wh")
    _deliver(client, scaikey, "group.member_added", {"group_id": gid, "user_id": uid}, tenant_id="tnt_wh")
    me = client.get("/v1/auth/whoami", headers=auth(scaikey.mint(sub=uid, tenant_id="tnt_wh"))).get_json()
    assert me["identity_id"] == f"user:{uid}@x.y"
    assert me["groups"] == ["group:sre"]


def test_the_stand_in_delivers_to_a_running_server(app, scaikey, db):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uid = _uid("usr")
        url = f"http://127.0.0.1:{server.server_port}{URL}"
        resp = scaikey.send_webhook(url, "user.created", {"id": uid, "email": "live@x.y"}, tenant_id="tnt_wh")
        assert resp.status_code == 200 and resp.json()["status"] == "applied"
        assert db.one("SELECT id FROM identity_users WHERE id = :id", id=uid) is not None
    finally:
        server.shutdown()


def test_without_a_configured_secret_the_receiver_refuses(make_app, scaikey):
    client = make_app(IDENTITY_SYNC_WEBHOOK_SECRET="").test_client()
    resp = _deliver(client, scaikey, "user.created", {"id": "usr_nosecret"})
    assert resp.status_code == 503


@pytest.mark.parametrize("data,kw", [
    ({"id": 5}, {}), ({"id": "usr_nul", "email": "a\x00b"}, {}), ([1, 2], {}),
    ({"id": "usr_t", "tenant": "not-an-object", "mfa_enabled": "yes"}, {}),
])
def test_odd_event_payloads_are_acknowledged_never_500(client, scaikey, data, kw):
    resp = _deliver(client, scaikey, "user.created", data, **kw) if isinstance(data, dict) else None
    if resp is None:
        body, headers = scaikey.build_webhook("user.created", {})
        import json

        body = json.dumps({"event_id": "evt_list", "event_type": "user.created", "data": data}).encode()
        headers["X-ScaiKey-Signature"] = scaikey.sign(body)
        resp = client.post(URL, data=body, headers=headers)
    assert resp.status_code == 200
    assert resp.get_json()["status"] in ("applied", "ignored", "failed")


def test_an_unusable_event_id_is_invalid_request(client, scaikey):
    import json

    body = json.dumps({"event_id": "evt\x00x", "event_type": "user.created", "data": {}}).encode()
    resp = client.post(URL, data=body, headers={"X-ScaiKey-Signature": scaikey.sign(body)})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_request"


def test_a_user_suspended_through_one_instance_is_refused_by_another_within_a_second(make_app, scaikey, auth):
    receiver, other = make_app().test_client(), make_app().test_client()
    uid = _uid("usr")
    _deliver(receiver, scaikey, "user.created", {"id": uid, "email": f"{uid}@x.y"}, tenant_id="tnt_wh")
    token = scaikey.mint(sub=uid, tenant_id="tnt_wh")
    assert other.get("/v1/auth/whoami", headers=auth(token)).status_code == 200     # cached there now
    _deliver(receiver, scaikey, "user.deleted", {"id": uid})
    deadline = time.monotonic() + 1.0
    while other.get("/v1/auth/whoami", headers=auth(token)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    resp = other.get("/v1/auth/whoami", headers=auth(token))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"


def test_concurrent_redeliveries_of_one_event_apply_it_once(app, scaikey, db):
    from concurrent.futures import ThreadPoolExecutor

    gid = _uid("grp")
    body, headers = scaikey.build_webhook("group.created", {"id": gid, "name": "race"}, tenant_id="tnt_wh")

    def deliver(_):
        return app.test_client().post(URL, data=body, headers=headers).get_json()["status"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(deliver, range(4)))
    assert statuses == ["applied", "duplicate", "duplicate", "duplicate"]
