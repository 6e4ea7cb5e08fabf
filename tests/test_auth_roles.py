"""Admin roles: the role store rules of spec/10 section 3.3 and BOOTSTRAP_SUPER_ADMIN."""
from __future__ import annotations

import secrets

import pytest

from scaivault.auth.identity import Identity, RoleGrant
from scaivault.bootstrap import first_boot
from scaivault.identity import store


@pytest.fixture
def people(app):
    """A partner with two tenants, one user in each, and a user of another partner (unique per test)."""
    tag = secrets.token_hex(3)
    ids = {"p": f"ptn_r{tag}", "p2": f"ptn_r2{tag}", "t1": f"tnt_r1{tag}", "t2": f"tnt_r2{tag}", "tx": f"tnt_rx{tag}",
           "u1": f"usr_r1{tag}", "u2": f"usr_r2{tag}", "ux": f"usr_rx{tag}", "adm": f"usr_ra{tag}"}
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_partner(s, {"id": ids["p"]})
        store.upsert_partner(s, {"id": ids["p2"]})
        store.upsert_tenant(s, {"id": ids["t1"], "partner_id": ids["p"]})
        store.upsert_tenant(s, {"id": ids["t2"], "partner_id": ids["p"]})
        store.upsert_tenant(s, {"id": ids["tx"], "partner_id": ids["p2"]})
        for key, tenant in (("u1", "t1"), ("u2", "t2"), ("ux", "tx"), ("adm", "t1")):
            store.upsert_user(s, {"id": ids[key], "tenant_id": ids[tenant], "email": f"{ids[key]}@r.example"})
    return ids


def _put(client, headers, user_id, roles):
    return client.put(f"/v1/identity/users/{user_id}/roles", json={"roles": roles}, headers=headers)


def _token(scaikey, people, key="adm", tenant="t1", role=None, scopes=("identity:admin", "identity:read")):
    return scaikey.mint(sub=people[key], tenant_id=people[tenant], partner_id=people["p"] if tenant != "tx" else people["p2"],
                        role=role, scopes=scopes)


def test_the_roles_endpoint_lists_the_three_admin_roles(client, scaikey, auth, people):
    body = client.get("/v1/identity/roles", headers=auth(_token(scaikey, people))).get_json()
    assert [r["name"] for r in body["roles"]] == ["super_admin", "partner_admin", "tenant_admin"]


def test_a_partner_admin_assigns_tenant_admin_within_its_partner(client, scaikey, auth, people):
    headers = auth(_token(scaikey, people, role="partner_admin"))
    resp = _put(client, headers, people["u2"], ["tenant_admin"])
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["roles"] == ["tenant_admin"]
    got = client.get(f"/v1/identity/users/{people['u2']}/roles", headers=headers).get_json()
    assert got["assignments"][0]["tenant_id"] == people["t2"]
    # the grant shows up in the user's identity and reaches only that tenant
    me = client.get("/v1/auth/whoami", headers=auth(_token(scaikey, people, key="u2", tenant="t2"))).get_json()
    assert me["roles"] == ["tenant_admin"]


def test_a_partner_admin_cannot_touch_users_of_another_partner(client, scaikey, auth, people):
    resp = _put(client, auth(_token(scaikey, people, role="partner_admin")), people["ux"], ["tenant_admin"])
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"


def test_a_tenant_admin_or_plain_user_cannot_change_roles(client, scaikey, auth, people):
    for role in ("tenant_admin", None):
        resp = _put(client, auth(_token(scaikey, people, role=role)), people["u1"], ["tenant_admin"])
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"


def test_only_a_super_admin_grants_super_admin(client, scaikey, auth, people):
    partner = auth(_token(scaikey, people, role="partner_admin"))
    assert _put(client, partner, people["u1"], ["super_admin"]).status_code == 403
    superadmin = auth(_token(scaikey, people, role="super_admin"))
    assert _put(client, superadmin, people["u1"], ["super_admin"]).status_code == 200
    # and a partner admin cannot take it away again either
    assert _put(client, partner, people["u1"], []).status_code == 403


def test_nobody_elevates_themselves(client, scaikey, auth, people):
    partner = auth(_token(scaikey, people, role="partner_admin"))
    resp = _put(client, partner, people["adm"], ["partner_admin", "tenant_admin"])
    assert resp.status_code == 403
    # partner_admin is held only through the token's claim: storing it would outlive the claim (F3)
    assert resp.get_json()["error"]["details"]["roles"] == ["partner_admin", "tenant_admin"]
    assert _put(client, partner, people["adm"], ["partner_admin"]).status_code == 403
    # dropping what one stores is not elevation
    assert _put(client, partner, people["adm"], []).status_code == 200


def test_changing_roles_needs_the_identity_admin_scope(client, scaikey, auth, people):
    token = _token(scaikey, people, role="super_admin", scopes=("identity:read",))
    resp = _put(client, auth(token), people["u1"], ["tenant_admin"])
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "insufficient_scope"


def test_an_unknown_role_is_invalid_role(client, scaikey, auth, people):
    resp = _put(client, auth(_token(scaikey, people, role="super_admin")), people["u1"], ["root"])
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_role"


def test_roles_of_an_unknown_user_are_identity_not_found(client, scaikey, auth, people):
    resp = _put(client, auth(_token(scaikey, people, role="super_admin")), "usr_nobody_here", ["tenant_admin"])
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "identity_not_found"


def test_a_role_removed_in_the_store_leaves_the_users_tokens_at_once(client, scaikey, auth, people):
    superadmin = auth(_token(scaikey, people, role="super_admin"))
    _put(client, superadmin, people["u1"], ["tenant_admin"])
    user = auth(_token(scaikey, people, key="u1"))
    assert client.get("/v1/auth/whoami", headers=user).get_json()["roles"] == ["tenant_admin"]
    _put(client, superadmin, people["u1"], [])
    assert client.get("/v1/auth/whoami", headers=user).get_json()["roles"] == []


def test_admin_reach_follows_the_grant():
    ident = Identity("user:a@b", "user", "usr_a", "tnt_1", "ptn_1", frozenset(),
                     grants=(RoleGrant("partner_admin", "ptn_1"), RoleGrant("tenant_admin", "ptn_2", "tnt_9")))
    assert ident.admin_over("tnt_5", "ptn_1")
    assert ident.admin_over("tnt_9", "ptn_2")
    assert not ident.admin_over("tnt_8", "ptn_2")
    assert Identity("sa:x", "service_account", "x", None, None, frozenset(),
                    grants=(RoleGrant("super_admin"),)).admin_over("anything", None)


def test_bootstrap_super_admin_is_promoted_once_and_audited(make_app, scaikey, auth):
    email = f"boot-{secrets.token_hex(3)}@acme.example"
    app = make_app(BOOTSTRAP_SUPER_ADMIN=f"user:{email}")
    rt = app.extensions["scaivault"]
    first_boot(rt)
    assert rt.db.scalar("SELECT value->>'identity_id' FROM system_state WHERE key = 'bootstrap_super_admin'") == f"user:{email}"
    client = app.test_client()
    token = scaikey.mint(sub=f"usr_{secrets.token_hex(3)}", email=email, tenant_id="tnt_boot")
    assert client.get("/v1/auth/whoami", headers=auth(token)).get_json()["roles"] == ["super_admin"]
    audited = rt.db.query("SELECT extra_data FROM audit_log WHERE action = 'bootstrap_promote'")
    assert [a["extra_data"]["promoted"] for a in audited].count(f"user:{email}") == 1
    # an operator demotes the bootstrap admin: a restart (new instance) must not promote again
    rt.db.execute("DELETE FROM identity_role_assignments WHERE identity_id = :i", i=f"user:{email}")
    again = make_app(BOOTSTRAP_SUPER_ADMIN=f"user:{email}").test_client()
    fresh = scaikey.mint(sub=f"usr_{secrets.token_hex(3)}", email=email, tenant_id="tnt_boot")
    assert again.get("/v1/auth/whoami", headers=auth(fresh)).get_json()["roles"] == []
    audited = rt.db.query("SELECT extra_data FROM audit_log WHERE action = 'bootstrap_promote'")
    assert [a["extra_data"]["promoted"] for a in audited].count(f"user:{email}") == 1


def test_other_identities_are_not_promoted(make_app, scaikey, auth):
    app = make_app(BOOTSTRAP_SUPER_ADMIN="user:the-boss@acme.example")
    token = scaikey.mint(sub="usr_notboss", email="someone@acme.example", tenant_id="tnt_boot")
    assert app.test_client().get("/v1/auth/whoami", headers=auth(token)).get_json()["roles"] == []


def test_introspecting_the_bootstrap_admins_token_does_not_promote_it(make_app, scaikey, auth):
    email = f"boot-{secrets.token_hex(3)}@acme.example"
    app = make_app(BOOTSTRAP_SUPER_ADMIN=f"user:{email}")
    client, db = app.test_client(), app.extensions["scaivault"].db
    theirs = scaikey.mint(sub=f"usr_{secrets.token_hex(3)}", email=email, tenant_id="tnt_boot")
    admin = scaikey.mint(sub="usr_introspector", tenant_id="tnt_boot", scopes=("admin",), role="tenant_admin")
    assert client.post("/v1/auth/introspect", json={"token": theirs}, headers=auth(admin)).get_json()["active"]
    assert db.scalar("SELECT count(*) FROM identity_role_assignments WHERE identity_id = :i", i=f"user:{email}") == 0
    assert client.get("/v1/auth/whoami", headers=auth(theirs)).get_json()["roles"] == ["super_admin"]
