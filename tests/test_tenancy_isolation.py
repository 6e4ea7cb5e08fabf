"""Issue 9, F7, F9, F11, F12: reach, policy-test disclosure, retention, and auditing of cross-tenant attempts.

Partners ptn_a (tnt_a1, tnt_a2) and ptn_b (tnt_b1) of the ScaiKey stand-in, suffixed per test.
"""
from __future__ import annotations

import secrets

import pytest

from scaivault.identity import store
from tests.secrets_support import ALL_SECRET_SCOPES, HIGH_RATE_LIMITS, Callers, error_code, grant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def world(app):
    tag = secrets.token_hex(3)
    w = {"ptn_a": f"ptn_a{tag}", "ptn_b": f"ptn_b{tag}", "tnt_a1": f"tnt_a1{tag}", "tnt_a2": f"tnt_a2{tag}",
         "tnt_b1": f"tnt_b1{tag}", "tag": tag}
    with app.extensions["scaivault"].db.transaction() as s:
        for tenant, partner in (("tnt_a1", "ptn_a"), ("tnt_a2", "ptn_a"), ("tnt_b1", "ptn_b")):
            store.upsert_tenant(s, {"id": w[tenant], "partner_id": w[partner]})
    return w


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


def _db(app):
    return app.extensions["scaivault"].db


# ----------------------------------------------------------------------------- F7
def test_a_partner_admin_cannot_rotate_another_partners_tenant_key_or_learn_about_it(app, scaikey, auth, world, callers):
    other_admin = callers.admin(world["tnt_b1"], partner=world["ptn_b"])
    assert other_admin.put("/v1/secrets/b/secret", json={"data": {"x": "y"}}).status_code == 201
    mallory = scaikey.mint(sub="usr_pa" + world["tag"], tenant_id=world["tnt_a1"], partner_id=world["ptn_a"],
                           role="partner_admin", scopes=("admin",))
    client = app.test_client()
    keys_before = _db(app).scalar("SELECT count(*) FROM tenant_keys")
    answers = []
    for body in ({"scope": "tenant", "tenant_id": world["tnt_b1"]},
                 {"scope": "tenant", "tenant_id": world["tnt_b1"], "partner_id": world["ptn_a"]},
                 {"scope": "tenant", "tenant_id": "tnt_does_not_exist" + world["tag"], "partner_id": world["ptn_a"]}):
        resp = client.post("/v1/system/keys/rotate", json=body, headers=auth(mallory))
        assert resp.status_code == 404 and error_code(resp) == "tenant_not_found", resp.get_json()
        answers.append(resp.get_json()["error"]["message"])
    assert len(set(answers)) == 1
    assert _db(app).scalar("SELECT count(*) FROM tenant_keys") == keys_before
    assert _db(app).scalar("SELECT count(*) FROM audit_log WHERE tenant_id = :t AND action = 'rotate'",
                           t=world["tnt_b1"]) == 0
    # its own tenant rotates, and the count covers that tenant only
    admin_a = callers.admin(world["tnt_a1"], partner=world["ptn_a"])
    assert admin_a.put("/v1/secrets/a/secret", json={"data": {"x": "y"}}).status_code == 201
    ok = client.post("/v1/system/keys/rotate", json={"scope": "tenant", "tenant_id": world["tnt_a1"]},
                     headers=auth(mallory))
    assert ok.status_code == 200 and ok.get_json()["rewrapped"] == 1, ok.get_json()


# ----------------------------------------------------------------------------- F9
def test_a_non_admin_cannot_read_other_groups_policies_through_the_test_endpoint(app, world, callers):
    admin = callers.admin(world["tnt_a1"], partner=world["ptn_a"])
    grant(admin, "group:finance", [{"path_pattern": "finance/**", "permissions": ["read"],
                                    "conditions": {"ip_ranges": ["10.9.8.0/24"]}}])
    user = callers.user(f"plain{world['tag']}@a.example", world["tnt_a1"], partner=world["ptn_a"],
                        scopes=ALL_SECRET_SCOPES + ("policies:read",))
    probe = {"path": "finance/payroll", "permission": "read"}
    for body in ({**probe, "groups": ["group:finance"]}, {**probe, "identity_id": "user:someone@a.example"}):
        resp = user.post("/v1/policies/test", json=body)
        assert resp.status_code == 403 and error_code(resp) == "access_denied", resp.get_json()
        assert "10.9.8.0" not in resp.get_data(as_text=True)
    mine = user.post("/v1/policies/test", json=probe)
    assert mine.status_code == 200 and mine.get_json()["allowed"] is False
    assert mine.get_json()["evaluated_policies"] == []
    # an admin may test any group
    tested = admin.post("/v1/policies/test", json={**probe, "groups": ["group:finance"],
                                                   "context": {"source_ip": "10.9.8.7"}})
    assert tested.status_code == 200 and tested.get_json()["allowed"] is True


# ----------------------------------------------------------------------------- F11
@pytest.mark.parametrize("how", ["metadata", "write_option"])
def test_lowering_retention_needs_the_delete_permission(app, world, callers, how):
    admin = callers.admin(world["tnt_a1"], partner=world["ptn_a"])
    for n in range(3):
        assert admin.put("/v1/secrets/hist/key", json={"data": {"v": str(n)}}).status_code in (200, 201)
    writer = callers.user(f"writer{world['tag']}@a.example", world["tnt_a1"], partner=world["ptn_a"])
    grant(admin, writer.identity_id, [{"path_pattern": "hist/**", "permissions": ["read", "write", "list"]}])
    if how == "metadata":
        resp = writer.patch("/v1/secrets/hist/key:metadata", json={"max_versions": 1})
    else:
        resp = writer.put("/v1/secrets/hist/key", json={"data": {"v": "new"}, "options": {"max_versions": 1}})
    assert resp.status_code == 403 and error_code(resp) == "access_denied", resp.get_json()
    for version in (1, 2, 3):
        assert writer.get(f"/v1/secrets/hist/key?version={version}").status_code == 200
    # raising it, or leaving it alone, is a plain write
    assert writer.patch("/v1/secrets/hist/key:metadata", json={"max_versions": 50}).status_code == 200
    grant(admin, writer.identity_id, [{"path_pattern": "hist/**", "permissions": ["delete"]}])
    assert writer.patch("/v1/secrets/hist/key:metadata", json={"max_versions": 1}).status_code == 200
    assert writer.get("/v1/secrets/hist/key?version=1").status_code in (404, 410)


# ----------------------------------------------------------------------------- F12
def test_a_cross_tenant_attempt_is_audited_in_both_tenants_naming_the_target(app, scaikey, world, callers):
    intruder = callers.user(f"intruder{world['tag']}@b.example", world["tnt_b1"], partner=world["ptn_b"])
    resp = intruder.get("/v1/secrets/db/password", headers={"X-Tenant-ID": world["tnt_a1"]})
    assert resp.status_code == 403
    rows = _db(app).query("""SELECT tenant_id, partner_id, success, extra_data FROM audit_log
                             WHERE identity_id = :i ORDER BY tenant_id""", i=intruder.identity_id)
    assert {r["tenant_id"] for r in rows} == {world["tnt_a1"], world["tnt_b1"]}
    for row in rows:
        assert row["success"] is False and row["extra_data"]["target_tenant_id"] == world["tnt_a1"]
    targeted = next(r for r in rows if r["tenant_id"] == world["tnt_a1"])
    assert targeted["partner_id"] == world["ptn_a"] and targeted["extra_data"]["home_tenant_id"] == world["tnt_b1"]


def test_an_attempt_on_a_tenant_that_does_not_exist_is_audited_at_home_only(app, world, callers):
    intruder = callers.user(f"prober{world['tag']}@b.example", world["tnt_b1"], partner=world["ptn_b"])
    ghost = "tnt_ghost" + world["tag"]
    assert intruder.get("/v1/secrets/x", headers={"X-Tenant-ID": ghost}).status_code == 403
    rows = _db(app).query("SELECT tenant_id, extra_data FROM audit_log WHERE identity_id = :i", i=intruder.identity_id)
    assert [(r["tenant_id"], r["extra_data"]["target_tenant_id"]) for r in rows] == [(world["tnt_b1"], ghost)]
