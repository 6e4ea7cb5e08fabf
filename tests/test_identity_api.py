"""/v1/identity/* listings and resolve (spec/10 section 3.5), within the caller's reach."""
from __future__ import annotations

import secrets

import pytest

from scaivault.identity import store


@pytest.fixture
def world(app):
    tag = secrets.token_hex(3)
    w = {k: f"{p}{tag}" for k, p in {"p": "ptn_a", "p2": "ptn_b", "t1": "tnt_a1", "t2": "tnt_a2", "tx": "tnt_bx",
                                     "u1": "usr_a1", "u2": "usr_a2", "ux": "usr_bx", "g": "grp_a", "gn": "grp_an"}.items()}
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_partner(s, {"id": w["p"], "name": "Acme", "region": "eu-west-1"})
        store.upsert_partner(s, {"id": w["p2"], "name": "Other"})
        store.upsert_tenant(s, {"id": w["t1"], "partner_id": w["p"], "name": "prod"})
        store.upsert_tenant(s, {"id": w["t2"], "partner_id": w["p"], "name": "dev"})
        store.upsert_tenant(s, {"id": w["tx"], "partner_id": w["p2"]})
        store.upsert_user(s, {"id": w["u1"], "tenant_id": w["t1"], "email": f"alice{tag}@acme.example",
                              "first_name": "Alice", "last_name": "A", "mfa_enabled": True})
        store.upsert_user(s, {"id": w["u2"], "tenant_id": w["t1"], "email": f"bob{tag}@acme.example", "status": "SUSPENDED"})
        store.upsert_user(s, {"id": w["ux"], "tenant_id": w["tx"], "email": f"x{tag}@other.example"})
        store.upsert_group(s, {"id": w["g"], "tenant_id": w["t1"], "name": "sre"})
        store.upsert_group(s, {"id": w["gn"], "tenant_id": w["t1"], "name": "platform"})
        store.add_member(s, w["g"], "user", w["u1"])
        store.add_member(s, w["gn"], "group", w["g"])
    w["tag"] = tag
    return w


def _reader(scaikey, w, tenant="t1", role=None, partner="p"):
    return scaikey.mint(sub=f"usr_reader{w['tag']}", tenant_id=w[tenant], partner_id=w[partner], role=role,
                        scopes=("identity:read",))


def test_users_of_my_tenant_are_listed_with_groups_and_paging(client, scaikey, auth, world):
    headers = auth(_reader(scaikey, world))
    body = client.get(f"/v1/identity/tenants/{world['t1']}/users?page_size=1", headers=headers).get_json()
    assert body["total"] == 2 and len(body["users"]) == 1
    alice = body["users"][0]
    assert alice["id"] == world["u1"] and alice["groups"] == [world["g"]] and alice["mfa_enabled"] is True
    assert alice["display_name"] == "Alice A" and alice["status"] == "ACTIVE" and alice["last_synced_at"]
    assert client.get(f"/v1/identity/tenants/{world['t1']}/users?page=2&page_size=1",
                      headers=headers).get_json()["users"][0]["id"] == world["u2"]
    filtered = client.get(f"/v1/identity/tenants/{world['t1']}/users?status=SUSPENDED", headers=headers).get_json()
    assert [u["id"] for u in filtered["users"]] == [world["u2"]]
    searched = client.get(f"/v1/identity/tenants/{world['t1']}/users?q=alice", headers=headers).get_json()
    assert [u["id"] for u in searched["users"]] == [world["u1"]]


def test_users_of_another_tenant_are_refused(client, scaikey, auth, world):
    resp = client.get(f"/v1/identity/tenants/{world['t2']}/users", headers=auth(_reader(scaikey, world)))
    # F6: a tenant outside the caller's reach answers like one that does not exist
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "tenant_not_found"
    missing = client.get("/v1/identity/tenants/tnt_nowhere/users", headers=auth(_reader(scaikey, world)))
    assert missing.status_code == 404 and missing.get_json()["error"] == {**resp.get_json()["error"],
                                                                            "request_id": missing.get_json()["error"]["request_id"]}


def test_a_partner_admin_lists_users_of_its_other_tenants_but_not_other_partners(client, scaikey, auth, world):
    headers = auth(_reader(scaikey, world, role="partner_admin"))
    assert client.get(f"/v1/identity/tenants/{world['t2']}/users", headers=headers).status_code == 200
    assert client.get(f"/v1/identity/tenants/{world['tx']}/users", headers=headers).status_code == 404


def test_tenants_and_partners_are_limited_to_the_callers_reach(client, scaikey, auth, world):
    plain = auth(_reader(scaikey, world))
    assert [t["id"] for t in client.get("/v1/identity/tenants", headers=plain).get_json()["tenants"]] == [world["t1"]]
    assert [p["id"] for p in client.get("/v1/identity/partners", headers=plain).get_json()["partners"]] == [world["p"]]
    partner = auth(_reader(scaikey, world, role="partner_admin"))
    ids = [t["id"] for t in client.get("/v1/identity/tenants", headers=partner).get_json()["tenants"]]
    assert ids == sorted([world["t1"], world["t2"]])
    superadmin = auth(_reader(scaikey, world, role="super_admin"))
    body = client.get(f"/v1/identity/tenants?partner_id={world['p2']}", headers=superadmin).get_json()
    assert [t["id"] for t in body["tenants"]] == [world["tx"]]
    partners = client.get("/v1/identity/partners?page_size=500", headers=superadmin).get_json()
    assert {world["p"], world["p2"]} <= {p["id"] for p in partners["partners"]}
    assert next(p for p in partners["partners"] if p["id"] == world["p"])["region"] == "eu-west-1"


def test_groups_and_members(client, scaikey, auth, world):
    headers = auth(_reader(scaikey, world))
    groups = client.get(f"/v1/identity/tenants/{world['t1']}/groups", headers=headers).get_json()
    assert [(g["name"], g["identity_id"]) for g in groups["groups"]] == [("platform", "group:platform"), ("sre", "group:sre")]
    members = client.get(f"/v1/identity/groups/{world['g']}/members", headers=headers).get_json()
    assert members["total"] == 1
    assert members["members"][0]["user_id"] == world["u1"]
    assert members["members"][0]["membership_type"] == "DIRECT" and members["members"][0]["added_at"]
    nested = client.get(f"/v1/identity/groups/{world['gn']}/members", headers=headers).get_json()
    assert nested["members"][0]["group_id"] == world["g"]


def test_members_of_a_group_in_another_tenant_are_refused(client, scaikey, auth, world):
    headers = auth(_reader(scaikey, world, tenant="tx", partner="p2"))
    foreign = client.get(f"/v1/identity/groups/{world['g']}/members", headers=headers)
    missing = client.get("/v1/identity/groups/grp_nowhere/members", headers=headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.get_json()["error"]["code"] == missing.get_json()["error"]["code"] == "identity_not_found"
    assert world["t1"] not in foreign.get_data(as_text=True)


def test_resolve_finds_users_by_id_or_email_with_their_nested_groups(client, scaikey, auth, world):
    headers = auth(_reader(scaikey, world))
    by_id = client.get(f"/v1/identity/resolve/user/{world['u1']}", headers=headers).get_json()
    assert by_id["id"] == world["u1"] and by_id["type"] == "user"
    assert by_id["group_names"] == ["group:platform", "group:sre"]
    by_email = client.get(f"/v1/identity/resolve/user/user:alice{world['tag']}@acme.example", headers=headers)
    assert by_email.get_json()["id"] == world["u1"]
    group = client.get("/v1/identity/resolve/group/group:sre", headers=headers).get_json()
    assert group["id"] == world["g"]


def test_resolve_of_an_unknown_identity_is_identity_not_found(client, scaikey, auth, world):
    headers = auth(_reader(scaikey, world))
    resp = client.get("/v1/identity/resolve/user/usr_nope", headers=headers)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "identity_not_found"
    assert client.get("/v1/identity/resolve/robot/x", headers=headers).status_code == 400


def test_resolve_does_not_leak_users_of_other_tenants(client, scaikey, auth, world):
    resp = client.get(f"/v1/identity/resolve/user/{world['ux']}", headers=auth(_reader(scaikey, world)))
    missing = client.get("/v1/identity/resolve/user/usr_nowhere", headers=auth(_reader(scaikey, world)))
    assert resp.status_code == missing.status_code == 404
    assert resp.get_json()["error"]["message"] == missing.get_json()["error"]["message"]
    assert world["tx"] not in resp.get_data(as_text=True)


@pytest.mark.parametrize("query", ["page=0", "page=abc", "page_size=501", "page_size=-1"])
def test_bad_paging_is_a_validation_error(client, scaikey, auth, world, query):
    resp = client.get(f"/v1/identity/tenants/{world['t1']}/users?{query}", headers=auth(_reader(scaikey, world)))
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "validation_error"


def test_identity_endpoints_need_the_identity_read_scope(client, scaikey, auth, world):
    token = scaikey.mint(sub="usr_noscope", tenant_id=world["t1"], scopes=("secrets:read",))
    resp = client.get(f"/v1/identity/tenants/{world['t1']}/users", headers=auth(token))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "insufficient_scope"


def test_group_identities_of_an_identity_id_include_nested_groups(app, world):
    with app.extensions["scaivault"].db.session() as s:
        alice = f"user:alice{world['tag']}@acme.example"
        assert store.group_identities_of(s, world["t1"], alice) == ("group:platform", "group:sre")
        # an email names a user within its own tenant only
        assert store.group_identities_of(s, world["tx"], alice) == ()
        assert store.group_identities_of(s, world["t1"], "user:nobody@x.y") == ()
        assert store.group_identities_of(s, world["t1"], "sa:reporting") == ()


def test_reads_of_the_identity_cache_are_audited_in_the_tenant_read(client, scaikey, auth, world, app):
    headers = auth(_reader(scaikey, world, role="partner_admin"))
    assert client.get(f"/v1/identity/tenants/{world['t2']}/users", headers=headers).status_code == 200
    assert client.get(f"/v1/identity/resolve/user/{world['u1']}", headers=headers).status_code == 200
    rows = app.extensions["scaivault"].db.query(
        "SELECT tenant_id, extra_data FROM audit_log WHERE action = 'identity_read' AND identity_id = :i ORDER BY ts",
        i=f"user:usr_reader{world['tag']}")
    assert [(r["tenant_id"], r["extra_data"]["endpoint"]) for r in rows][-2:] == [(world["t2"], "users"),
                                                                                 (world["t1"], "resolve")]
