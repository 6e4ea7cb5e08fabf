"""Tenant selection (path prefix, X-Tenant-ID, token claim) and the partner rules of spec/10 section 4."""
from __future__ import annotations

import pytest
from flask import g, jsonify

from scaivault.api.pipeline import endpoint


@pytest.fixture
def probe_client(make_app, database_url):
    """An app with one extra tenant-scoped probe route that reports the resolved tenant."""
    app = make_app()

    @endpoint("identity:read")
    def tenant_probe():
        return jsonify({"tenant_id": g.tenant.tenant_id, "partner_id": g.tenant.partner_id, "source": g.tenant.source})

    app.add_url_rule("/v1/test/tenant-probe", "tenant_probe", tenant_probe)
    rt = app.extensions["scaivault"]
    with rt.db.transaction() as s:
        from scaivault.identity import store

        store.upsert_partner(s, {"id": "ptn_ten_a", "name": "A"})
        store.upsert_partner(s, {"id": "ptn_ten_b", "name": "B"})
        store.upsert_tenant(s, {"id": "tnt_ten_a1", "partner_id": "ptn_ten_a"})
        store.upsert_tenant(s, {"id": "tnt_ten_a2", "partner_id": "ptn_ten_a"})
        store.upsert_tenant(s, {"id": "tnt_ten_b1", "partner_id": "ptn_ten_b"})
        store.upsert_tenant(s, {"id": "tnt_ten_susp", "partner_id": "ptn_ten_a", "status": "SUSPENDED"})
    return app.test_client()


def _probe(client, headers):
    return client.get("/v1/test/tenant-probe", headers=headers)


def test_the_token_claim_names_the_tenant_by_default(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_t1", tenant_id="tnt_ten_a1")
    body = _probe(probe_client, auth(token)).get_json()
    assert body == {"tenant_id": "tnt_ten_a1", "partner_id": "ptn_ten_a", "source": "token"}


def test_a_tenant_unknown_to_the_cache_is_created_just_in_time_and_marked_unsynced(probe_client, scaikey, auth, app):
    token = scaikey.mint(sub="usr_jit", tenant_id="tnt_brand_new", partner_id="ptn_brand_new")
    resp = _probe(probe_client, auth(token))
    assert resp.status_code == 200
    assert resp.get_json()["partner_id"] == "ptn_brand_new"
    row = app.extensions["scaivault"].db.one("SELECT synced, partner_id FROM identity_tenants WHERE id = 'tnt_brand_new'")
    assert row == {"synced": False, "partner_id": "ptn_brand_new"}


@pytest.mark.parametrize("how", ["header", "path"])
def test_a_user_of_tenant_a_naming_tenant_b_is_refused(probe_client, scaikey, auth, how):
    token = scaikey.mint(sub="usr_t2", tenant_id="tnt_ten_a1", scopes=("secrets:read",))
    if how == "header":
        resp = _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_a2"})
    else:
        resp = probe_client.get("/v1/t/tnt_ten_a2/test/tenant-probe", headers=auth(token))
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "access_denied"
    assert resp.get_json()["error"]["details"]["reason"] == "cross_tenant"


def test_path_prefix_selects_the_tenant(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_pa", tenant_id="tnt_ten_a1", partner_id="ptn_ten_a", role="partner_admin")
    resp = probe_client.get("/v1/t/tnt_ten_a2/test/tenant-probe", headers=auth(token))
    assert resp.status_code == 200
    assert resp.get_json() == {"tenant_id": "tnt_ten_a2", "partner_id": "ptn_ten_a", "source": "path"}


def test_a_user_naming_another_tenant_by_path_is_refused(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_t3", tenant_id="tnt_ten_a1")
    resp = probe_client.get("/v1/t/tnt_ten_b1/test/tenant-probe", headers=auth(token))
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "access_denied"


def test_a_user_naming_its_own_tenant_by_header_is_fine(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_t4", tenant_id="tnt_ten_a1")
    resp = _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_a1"})
    assert resp.status_code == 200
    assert resp.get_json()["source"] == "header"


def test_a_partner_admin_reaches_a_tenant_of_its_partner(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_pa2", tenant_id="tnt_ten_a1", partner_id="ptn_ten_a", role="partner_admin")
    resp = _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_a2"})
    assert resp.status_code == 200
    assert resp.get_json()["tenant_id"] == "tnt_ten_a2"


def test_a_partner_admin_is_refused_a_tenant_of_another_partner(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_pa3", tenant_id="tnt_ten_a1", partner_id="ptn_ten_a", role="partner_admin")
    resp = _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_b1"})
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "access_denied"


def test_a_partner_admin_naming_an_unknown_tenant_cannot_tell_it_from_a_foreign_one(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_pa4", tenant_id="tnt_ten_a1", partner_id="ptn_ten_a", role="partner_admin")
    resp = _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_does_not_exist"})
    assert resp.status_code == 403


def test_a_super_admin_reaches_any_tenant_and_learns_about_unknown_ones(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_sa", tenant_id="tnt_ten_a1", role="super_admin")
    assert _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_b1"}).status_code == 200
    resp = _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_does_not_exist"})
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "tenant_not_found"


def test_a_global_platform_service_token_must_name_a_tenant(probe_client, scaikey, auth):
    token = scaikey.mint_service("svc_global", app_scope="GLOBAL")
    resp = _probe(probe_client, auth(token))
    assert resp.status_code == 400
    assert resp.get_json()["error"]["details"]["reason"] == "tenant_required"
    assert _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_b1"}).status_code == 200


def test_a_tenant_scoped_service_token_stays_in_its_tenant(probe_client, scaikey, auth):
    token = scaikey.mint_service("svc_tenant", tenant_id="tnt_ten_a1", app_scope="TENANT")
    assert _probe(probe_client, auth(token)).status_code == 200
    assert _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_a2"}).status_code == 403


def test_a_suspended_tenant_refuses_its_users(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_susp", tenant_id="tnt_ten_susp")
    resp = _probe(probe_client, auth(token))
    assert resp.status_code == 403
    assert resp.get_json()["error"]["details"]["reason"] == "tenant_inactive"


def test_a_malformed_tenant_header_is_invalid_request(probe_client, scaikey, auth):
    token = scaikey.mint(sub="usr_bad", tenant_id="tnt_ten_a1")
    resp = _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt/../x"})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_request"


def test_a_partner_scoped_service_token_reaches_the_tenants_of_its_partner_only(probe_client, scaikey, auth):
    token = scaikey.mint_service("svc_partner", app_scope="PARTNER", partner_id="ptn_ten_a")
    assert _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_a2"}).status_code == 200
    assert _probe(probe_client, {**auth(token), "X-Tenant-ID": "tnt_ten_b1"}).status_code == 403


def test_a_personal_token_has_the_partner_reach_of_a_stored_role_only(probe_client, scaikey, auth):
    """F3: roles are derived at use; a `role` claim of the minting token is not kept."""
    creator = scaikey.mint(sub="usr_pa_pat", tenant_id="tnt_ten_a1", partner_id="ptn_ten_a", role="partner_admin",
                           scopes=("identity:read",))
    pat = probe_client.post("/v1/auth/tokens", json={"name": "pa", "scopes": ["identity:read"]},
                            headers=auth(creator)).get_json()["token"]
    assert _probe(probe_client, {**auth(creator), "X-Tenant-ID": "tnt_ten_a2"}).status_code == 200
    assert _probe(probe_client, {**auth(pat), "X-Tenant-ID": "tnt_ten_a2"}).status_code == 403
    rt = probe_client.application.extensions["scaivault"]
    with rt.db.transaction() as s:
        s.execute("""INSERT INTO identity_role_assignments (principal, identity_id, role, partner_id, source)
                     VALUES ('tnt_ten_a1/usr_pa_pat', 'user:usr_pa_pat', 'partner_admin', 'ptn_ten_a', 'store')
                     ON CONFLICT DO NOTHING""")
    rt.authenticator.invalidate()
    assert _probe(probe_client, {**auth(pat), "X-Tenant-ID": "tnt_ten_a2"}).status_code == 200
    assert _probe(probe_client, {**auth(pat), "X-Tenant-ID": "tnt_ten_b1"}).status_code == 403
