"""Secret policies, the event outbox and rotation over HTTP (spec/20 6, spec/30 2-4)."""
from __future__ import annotations

import pytest

from scaivault.lifecycle.clock import CLOCK
from scaivault.services.rotation import RotationService
from tests.lifecycle_support import events_of, lifecycle_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, grant, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


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
def db(app):
    return app.extensions["scaivault"].db


@pytest.fixture
def rotation(app):
    rt = app.extensions["scaivault"]
    return RotationService(rt.db, rt.secret_store)


@pytest.fixture(autouse=True)
def _reset_clock():
    CLOCK.reset()
    yield
    CLOCK.reset()


PASSWORD_POLICY = {"name": "db", "policy_type": "password",
                   "fields": [{"name": "password", "generator": "random",
                               "config": {"length": 24, "charset": "alphanumeric", "require_digit": True}},
                              {"name": "username", "generator": "static", "config": {"value": "svc"}}]}


# ------------------------------------------------------------------ secret policies
def test_secret_policy_crud_and_generate_preview_stores_nothing(admin, db, tenant):
    resp = admin.post("/v1/secret-policies", json=PASSWORD_POLICY)
    assert resp.status_code == 201, resp.get_json()
    sp = resp.get_json()
    assert sp["id"].startswith("sp_") and sp["is_active"] is True
    listing = admin.get("/v1/secret-policies").get_json()
    assert [p["id"] for p in listing["secret_policies"]] == [sp["id"]] and listing["has_more"] is False
    gen = admin.post(f"/v1/secret-policies/{sp['id']}/generate")
    assert gen.status_code == 200
    data = gen.get_json()["data"]
    assert len(data["password"]) == 24 and any(c.isdigit() for c in data["password"]) and data["username"] == "svc"
    assert db.scalar("SELECT count(*) FROM secrets WHERE tenant_id = :t", t=tenant) == 0
    audit = db.query("SELECT extra_data FROM audit_log WHERE tenant_id = :t AND action = 'secret_policy_generate'", t=tenant)
    assert len(audit) == 1 and data["password"] not in str(audit[0]["extra_data"])
    patched = admin.patch(f"/v1/secret-policies/{sp['id']}", json={"description": "db creds"})
    assert patched.status_code == 200 and patched.get_json()["description"] == "db creds"
    assert admin.delete(f"/v1/secret-policies/{sp['id']}").status_code == 204
    assert error_code(admin.get(f"/v1/secret-policies/{sp['id']}")) == "secret_policy_not_found"


def test_invalid_recipes_are_422_naming_the_field(admin):
    resp = admin.post("/v1/secret-policies", json={"name": "bad", "fields": [
        {"name": "p", "generator": "random", "config": {"length": 0}}]})
    assert resp.status_code == 422 and "fields[0].config.length" in resp.get_json()["error"]["details"]["fields"]
    resp = admin.post("/v1/secret-policies", json={"name": "bad", "fields": [
        {"name": "p", "generator": "random", "config": {"charset": "numeric", "require_upper": True}}]})
    assert resp.status_code == 422 and "fields[0].config.require_upper" in resp.get_json()["error"]["details"]["fields"]


def test_a_secret_policy_in_use_by_a_rotation_policy_needs_force(admin):
    sp = admin.post("/v1/secret-policies", json=PASSWORD_POLICY).get_json()["id"]
    rot = admin.post("/v1/rotation/policies", json={"name": "q", "interval": "90d", "secret_policy_id": sp})
    assert rot.status_code == 201, rot.get_json()
    resp = admin.delete(f"/v1/secret-policies/{sp}")
    assert resp.status_code == 409 and error_code(resp) == "secret_policy_in_use"
    assert admin.delete(f"/v1/secret-policies/{sp}?force=true").status_code == 204
    assert admin.get(f"/v1/rotation/policies/{rot.get_json()['id']}").get_json()["secret_policy_id"] is None


def test_generate_writes_a_version_from_the_secrets_recipe_and_returns_no_value(admin):
    sp = admin.post("/v1/secret-policies", json=PASSWORD_POLICY).get_json()["id"]
    put = admin.put("/v1/secrets/app/db/creds", json={"data": {"password": "x"}, "secret_policy_id": sp})
    assert put.status_code == 201 and put.get_json()["secret_policy_id"] == sp
    resp = admin.post("/v1/secrets/app/db/creds:generate")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["version"] == 2 and "data" not in body
    data = admin.get("/v1/secrets/app/db/creds").get_json()["data"]
    assert set(data) == {"password", "username"} and len(data["password"]) == 24
    missing = admin.put("/v1/secrets/app/db/other", json={"data": {"a": "b"}, "secret_policy_id": "sp_nope"})
    assert missing.status_code == 404 and error_code(missing) == "secret_policy_not_found"


# ------------------------------------------------------------------ events
def test_writes_and_deletes_emit_events_in_their_transaction(admin, db, tenant):
    admin.put("/v1/secrets/svc/api/key", json={"data": {"k": "v1"}, "metadata": {"tags": ["a"]}, "secret_type": "api_key"})
    admin.put("/v1/secrets/svc/api/key", json={"data": {"k": "v2"}})
    conflict = admin.put("/v1/secrets/svc/api/key", json={"data": {"k": "v3"}, "options": {"cas": 1}})
    assert conflict.status_code == 409
    admin.delete("/v1/secrets/svc/api/key")
    evs = events_of(db, tenant)
    assert [e["event_type"] for e in evs] == ["secret.created", "secret.updated", "secret.deleted"]
    created, updated, deleted = evs
    assert created["event_id"].startswith("evt_") and created["path"] == "svc/api/key"
    assert created["data"] == {"version": 1, "secret_type": "api_key", "created_by": admin.identity_id,
                               "tags": ["a"], "expires_at": None}
    assert updated["data"] == {"old_version": 1, "new_version": 2, "updated_by": admin.identity_id, "is_rotation": False}
    assert deleted["data"]["permanent"] is False and deleted["data"]["version_count"] == 2
    assert "recoverable_until" in deleted["data"]
    for e in evs:
        assert e["tenant_id"] == tenant and e["timestamp"].endswith("Z") and e["request_id"]
        assert "v1" not in str(e) and "v2" not in str(e)


def test_policy_changes_emit_policy_events_without_path(admin, db, tenant):
    pid = grant(admin, "user:someone@x.example", [{"path_pattern": "a/**", "permissions": ["read"]}])
    types = [e["event_type"] for e in events_of(db, tenant)]
    assert types == ["policy.created", "policy.binding.created"]
    assert all("path" not in e for e in events_of(db, tenant))
    assert events_of(db, tenant)[0]["data"]["policy_id"] == pid


def test_a_denied_read_emits_policy_violation(callers, admin, db, tenant):
    reader = callers.user("reader@x.example", tenant)
    grant(admin, reader.identity_id, [{"path_pattern": "open/**", "permissions": ["read"]}])
    assert reader.get("/v1/secrets/closed/x").status_code == 403
    violations = events_of(db, tenant, "policy.violation")
    assert len(violations) == 1 and violations[0]["path"] == "closed/x"
    assert violations[0]["identity_id"] == reader.identity_id and violations[0]["data"]["permission"] == "read"


def test_reads_emit_no_access_event_unless_someone_listens(admin, db, tenant):
    admin.put("/v1/secrets/quiet/one", json={"data": {"a": "b"}})
    admin.get("/v1/secrets/quiet/one")
    assert events_of(db, tenant, "secret.accessed") == []


# ------------------------------------------------------------------ rotation
def _policy(admin, **body) -> dict:
    resp = admin.post("/v1/rotation/policies", json={"name": "p-" + str(len(body)) + str(id(body)), "interval": "90d", **body})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_rotation_policy_crud_defaults_and_errors(admin):
    p = _policy(admin, warn_before="7d,1d")
    assert p["id"].startswith("rot_") and p["interval_seconds"] == 7776000 and p["grace_period"] == "48h"
    assert p["auto_generate"] is False and p["is_active"] is True and p["secrets_count"] == 0
    assert p["warn_before"] == "7d,1d"
    bad = admin.post("/v1/rotation/policies", json={"name": "x", "interval": "ninety days"})
    assert bad.status_code == 400 and error_code(bad) == "invalid_duration"
    dup = admin.post("/v1/rotation/policies", json={"name": p["name"], "interval": "1d"})
    assert dup.status_code == 409
    assert admin.post(f"/v1/rotation/policies/{p['id']}/disable").get_json()["is_active"] is False
    assert admin.post(f"/v1/rotation/policies/{p['id']}/enable").get_json()["is_active"] is True
    assert error_code(admin.get("/v1/rotation/policies/rot_missing")) == "rotation_policy_not_found"
    unknown = admin.put("/v1/secrets/r/x", json={"data": {"a": "b"}, "options": {"rotation_policy_id": "rot_nope"}})
    assert unknown.status_code == 404 and error_code(unknown) == "rotation_policy_not_found"
    assert admin.delete(f"/v1/rotation/policies/{p['id']}").status_code == 204


def test_auto_rotation_warns_per_threshold_rotates_once_per_cycle_and_follows_the_recipe(admin, db, tenant, rotation):
    sp = admin.post("/v1/secret-policies", json=PASSWORD_POLICY).get_json()["id"]
    p = _policy(admin, warn_before="7d,1d", auto_generate=True, secret_policy_id=sp, grace_period="48h")
    put = admin.put("/v1/secrets/auto/db", json={"data": {"password": "first"},
                                                  "options": {"rotation_policy_id": p["id"]}})
    assert put.status_code == 201 and put.get_json()["rotation_policy_id"] == p["id"]
    rotation.scan()
    assert events_of(db, tenant, "rotation.due") == []
    CLOCK.advance(83 * 86400 + 60)                 # day 83: the 7d warning
    rotation.scan(); rotation.scan()
    CLOCK.advance(6 * 86400)                       # day 89: the 1d warning
    rotation.scan()
    due = events_of(db, tenant, "rotation.due")
    assert [e["data"]["threshold"] for e in due] == ["7d", "1d"] and not any(e["data"]["due_now"] for e in due)
    CLOCK.advance(86400)                           # day 90: rotate
    assert rotation.scan()["locked"] is True
    rotation.scan()
    current = admin.get("/v1/secrets/auto/db").get_json()
    assert current["version"] == 2 and set(current["data"]) == {"password", "username"}
    assert len(current["data"]["password"]) == 24 and current["data"]["username"] == "svc"
    rotated = events_of(db, tenant, "secret.rotated")
    assert len(rotated) == 1 and rotated[0]["identity_id"] == "system:rotation-scheduler"
    assert rotated[0]["data"]["old_version"] == 1 and rotated[0]["data"]["new_version"] == 2
    assert rotated[0]["data"]["auto_generated"] is True and rotated[0]["data"]["grace_period_ends"]
    assert events_of(db, tenant, "secret.updated")[-1]["data"]["is_rotation"] is True
    assert len(events_of(db, tenant, "rotation.completed")) == 1
    # grace: version 1 readable for 48h, then destroyed
    assert admin.get("/v1/secrets/auto/db?version=1").status_code == 200
    CLOCK.advance(49 * 3600)
    rotation.scan()
    gone = admin.get("/v1/secrets/auto/db?version=1")
    assert gone.status_code == 410 and error_code(gone) == "version_destroyed"
    history = admin.get(f"/v1/rotation/policies/{p['id']}/history").get_json()
    assert [h["status"] for h in history["data"]] == ["success"] and history["data"][0]["new_version"] == 2


def test_rotation_due_and_pending_page_on_the_shared_pagination(admin, rotation):
    p = _policy(admin, grace_period="48h")
    for i in range(5):
        admin.put(f"/v1/secrets/due/s{i}", json={"data": {"k": "v"}, "options": {"rotation_policy_id": p["id"]}})
        CLOCK.advance(60)                        # distinct due times: the order is (due_at, path)
    CLOCK.advance(90 * 86400)
    for url in ("/v1/rotation/due", "/v1/rotation/pending"):
        seen, cursor = [], None
        while True:
            body = admin.get(url, query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}).get_json()
            assert len(body["data"]) <= 2
            seen += [d["secret_path"] for d in body["data"]]
            cursor = body["cursor"]
            assert body["has_more"] is (cursor is not None)
            if cursor is None:
                break
        assert seen == [f"due/s{i}" for i in range(5)], url
    first = admin.get("/v1/rotation/due?limit=2").get_json()
    other = admin.get(f"/v1/rotation/policies/{p['id']}/history?cursor={first['cursor']}")
    assert other.status_code == 400 and error_code(other) == "invalid_cursor"
    assert error_code(admin.get("/v1/rotation/due?limit=1001")) == "invalid_request"
    assert error_code(admin.get(first["cursor"].join(["/v1/rotation/due?cursor=", "x"]))) == "invalid_cursor"
    not_overdue = admin.get("/v1/rotation/due?include_overdue=false&within_hours=1").get_json()
    assert not_overdue["data"] == [] and not_overdue["has_more"] is False


def test_event_driven_rotation_due_then_client_write_then_overdue_next_cycle(admin, db, tenant, rotation):
    p = _policy(admin, grace_period="48h")
    admin.put("/v1/secrets/oauth/sf", json={"data": {"client_secret": "a"}, "options": {"rotation_policy_id": p["id"]}})
    CLOCK.advance(90 * 86400 + 1)
    rotation.scan(); rotation.scan()
    due = [e for e in events_of(db, tenant, "rotation.due") if e["data"]["due_now"]]
    assert len(due) == 1
    listing = admin.get("/v1/rotation/due").get_json()["data"]
    assert listing[0]["secret_path"] == "oauth/sf" and listing[0]["overdue"] is True
    admin.put("/v1/secrets/oauth/sf", json={"data": {"client_secret": "b"}})
    rotated = events_of(db, tenant, "secret.rotated")
    assert len(rotated) == 1 and rotated[0]["data"]["auto_generated"] is False
    history = admin.get(f"/v1/rotation/policies/{p['id']}/history").get_json()["data"]
    assert [h["status"] for h in history] == ["success"]
    CLOCK.advance(90 * 86400 + 1)                  # next cycle: nobody writes
    rotation.scan()
    CLOCK.advance(49 * 3600)
    rotation.scan(); rotation.scan()
    assert len(events_of(db, tenant, "rotation.overdue")) == 1
    pending = admin.get(f"/v1/rotation/policies/{p['id']}/history?status=pending").get_json()["data"]
    assert len(pending) == 1


def test_manual_rotate_of_a_secret_and_attach_detach(admin, tenant):
    p = _policy(admin, auto_generate=True)
    admin.put("/v1/secrets/man/tok", json={"data": {"token": "t0", "id": "i0"}})
    att = admin.post(f"/v1/rotation/policies/{p['id']}/secrets", json={"secret_path": "man/tok"})
    assert att.status_code == 201 and att.get_json()["policy_id"] == p["id"]
    assert admin.get(f"/v1/rotation/policies/{p['id']}").get_json()["secrets_count"] == 1
    resp = admin.post("/v1/secrets/man/tok:rotate")
    assert resp.status_code == 200 and resp.get_json()["status"] == "success", resp.get_json()
    data = admin.get("/v1/secrets/man/tok").get_json()["data"]
    assert set(data) == {"token", "id"} and data["token"] != "t0" and len(data["token"]) == 32
    items = admin.post(f"/v1/rotation/policies/{p['id']}/rotate", json={"secret_paths": ["man/tok"]}).get_json()
    assert [i["status"] for i in items] == ["success"]
    assert admin.delete(f"/v1/rotation/policies/{p['id']}/secrets/man%2Ftok").status_code == 204
    assert admin.get("/v1/secrets/man/tok:metadata").get_json()["rotation_policy_id"] is None


def test_expiry_events_fire_once_per_threshold(admin, db, tenant, rotation):
    admin.put("/v1/secrets/exp/one", json={"data": {"a": "b"}, "options": {"expires_in": "40d"}})
    rotation.scan()
    assert events_of(db, tenant, "secret.expiring") == []
    CLOCK.advance(11 * 86400)                      # 29 days left: 30d threshold
    rotation.scan(); rotation.scan()
    CLOCK.advance(28 * 86400)                      # 1 day left: 1d (7d skipped as stale news)
    rotation.scan()
    CLOCK.advance(2 * 86400)
    rotation.scan(); rotation.scan()
    expiring = events_of(db, tenant, "secret.expiring")
    assert [e["data"]["threshold"] for e in expiring] == ["30d", "1d"]
    assert expiring[0]["data"]["days_remaining"] == 29
    assert len(events_of(db, tenant, "secret.expired")) == 1


BAD_BODIES = [
    ("POST", "/v1/secret-policies", {"name": "x", "fields": [{"name": "p", "generator": "random", "config": {"charset": ["a"]}}]}),
    ("POST", "/v1/secret-policies", {"name": "x", "fields": [{"name": ["p"], "generator": "bcrypt_hash",
                                                              "config": {"charset": {"a": 1}, "hash_field": 5}}]}),
    ("POST", "/v1/secret-policies", {"name": "x", "fields": "nope"}),
    ("POST", "/v1/secret-policies", {"name": "x", "fields": [{"name": "p", "generator": "template", "config": {"template": 7}}]}),
    ("POST", "/v1/secret-policies", {"name": "x\u0000", "fields": [{"name": "p", "generator": "static", "config": {"value": "\u0000"}}]}),
    ("POST", "/v1/rotation/policies", {"name": "x", "interval": 90}),
    ("POST", "/v1/rotation/policies", {"name": "x", "interval": "90d", "warn_before": [1, {"a": 2}]}),
    ("POST", "/v1/rotation/policies", {"name": "x", "interval": "1d", "warn_before": "2d"}),
    ("POST", "/v1/rotation/policies", {"name": "x", "interval": "90d", "webhook_ids": [1]}),
    ("POST", "/v1/webhooks", {"name": "x", "url": 5, "secret": "s" * 20, "events": ["secret.created"]}),
    ("POST", "/v1/webhooks", {"name": "x", "url": "https://[::1", "secret": "s" * 20, "events": ["secret.created"]}),
    ("POST", "/v1/webhooks", {"name": "x", "url": "https://e.example/h", "secret": "s" * 20, "events": [{"a": 1}]}),
    ("POST", "/v1/webhooks", {"name": "x", "url": "https://e.example/h", "secret": "s" * 20, "events": ["secret.created"],
                              "filters": {"tags": "t"}}),
    ("POST", "/v1/subscriptions", {"name": "x", "paths": [5], "events": ["secret.created"], "delivery": {"type": "polling"}}),
    ("POST", "/v1/subscriptions", {"name": "x", "paths": ["a/*"], "events": ["secret.created"],
                                   "delivery": {"type": "polling", "buffer_size": "big"}}),
    ("POST", "/v1/subscriptions", {"name": "x", "paths": ["a/*"], "events": ["secret.created"], "delivery": {"type": "carrier"}}),
    ("GET", "/v1/webhooks/wh_x/deliveries?cursor=eyJhZnRlciI6ICJub3BlIn0", None),
    ("GET", "/v1/rotation/policies?limit=abc", None),
    ("GET", "/v1/rotation/due?within_hours=-3", None),
    ("GET", "/v1/subscriptions/sub_x/poll?timeout=abc", None),
    ("POST", "/v1/secrets/a/b:generate", {"secret_policy_id": 7}),
]


@pytest.mark.parametrize("method,url,body", BAD_BODIES)
def test_bad_input_gets_a_json_error_never_a_500(admin, method, url, body):
    resp = admin.call(method, url, json=body) if body is not None else admin.call(method, url)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert "error" in resp.get_json()


def test_a_catch_up_after_long_downtime_rotates_once_and_sends_only_the_latest_warning(admin, db, tenant, rotation):
    p = _policy(admin, warn_before="7d,1d", auto_generate=True)
    admin.put("/v1/secrets/catchup/a", json={"data": {"k": "v"}, "options": {"rotation_policy_id": p["id"]}})
    CLOCK.advance(89 * 86400 + 3600)               # down from day 0 to day 89: both thresholds crossed
    rotation.scan()
    assert [e["data"]["threshold"] for e in events_of(db, tenant, "rotation.due")] == ["1d"]
    CLOCK.advance(200 * 86400)                     # down for 200 more days: two whole cycles missed
    rotation.scan(); rotation.scan(); rotation.scan()
    assert admin.get("/v1/secrets/catchup/a:metadata").get_json()["version"] == 2
    assert len(events_of(db, tenant, "secret.rotated")) == 1


def test_sv_secret_events_inserts_envelopes_for_a_one_statement_write_path(admin, db, tenant):
    import json as _json

    from scaivault.lifecycle.hooks import plain_write_events
    from scaivault.services.rotation import system_audit

    origin = system_audit(tenant, "ptn_test")("write", secret_path="fast/a")
    docs = plain_write_events("fast/a", 0, 1, origin, secret_type="kv", tags=["t"], expires_at=None)
    docs += plain_write_events("fast/a", 1, 2, origin, secret_type="kv", tags=None, expires_at=None)
    db.execute("SELECT sv_secret_events(0, 2, CAST(:e AS jsonb))", e=_json.dumps(docs))
    evs = events_of(db, tenant)
    assert [(e["event_type"], e["event_id"]) for e in evs] == [("secret.created", docs[0]["event_id"]),
                                                               ("secret.updated", docs[1]["event_id"])]
    assert evs[0]["data"]["tags"] == ["t"] and evs[1]["data"] == docs[1]["data"]


def test_certificate_issue_and_revoke_emit_certificate_events(callers, db, tenant):
    from tests.pki_support import make_hierarchy, pki_admin

    pki = pki_admin(callers, tenant)
    h = make_hierarchy(pki)
    issued = pki.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "ev.internal"}).get_json()
    assert pki.post(f"/v1/pki/certificates/{issued['id']}/revoke", json={"reason": "superseded"}).status_code == 200
    assert pki.post(f"/v1/pki/certificates/{issued['id']}/revoke", json={}).status_code == 200   # idempotent: no event
    got = [e for e in events_of(db, tenant) if e["event_type"].startswith("certificate.")]
    assert [e["event_type"] for e in got] == ["certificate.issued", "certificate.revoked"]
    assert got[0]["data"]["certificate_id"] == issued["id"] and got[0]["path"] == issued["secret_path"]
    assert got[1]["data"]["reason"] == "superseded" and "key_pem" not in str(got)


def test_certificate_expiring_fires_once_per_threshold(callers, db, tenant, rotation):
    from tests.pki_support import make_hierarchy, pki_admin

    pki = pki_admin(callers, tenant)
    h = make_hierarchy(pki)
    issued = pki.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "soon.internal", "ttl": "240h"}).get_json()
    rotation.scan()                                   # 10 days left: the 30d threshold
    rotation.scan()
    CLOCK.advance(9 * 86400 + 3600)                   # under a day left: 1d (7d was crossed meanwhile)
    rotation.scan()
    got = [e for e in events_of(db, tenant, "certificate.expiring") if e["data"]["certificate_id"] == issued["id"]]
    assert [e["data"]["threshold"] for e in got] == ["30d", "1d"]
    assert got[0]["data"]["days_remaining"] == 10 and got[0]["path"] == issued["secret_path"]
