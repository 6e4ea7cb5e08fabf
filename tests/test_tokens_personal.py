"""Personal access tokens (skt_): creation, listing, revocation everywhere within a second, expiry."""
from __future__ import annotations

import hashlib
import time

import pytest

from scaivault.auth import personal_tokens


@pytest.fixture
def alice(scaikey):
    return scaikey.mint(sub="usr_pat_alice", email="alice.pat@acme.example", tenant_id="tnt_pat",
                        partner_id="ptn_pat", scopes=("secrets:read", "secrets:write", "identity:read"))


def _create(client, headers, **body):
    body = {"name": "ci", "scopes": ["secrets:read"], **body}
    return client.post("/v1/auth/tokens", json=body, headers=headers)


def test_creating_a_token_shows_the_skt_value_once_and_stores_only_its_hash(client, app, auth, alice):
    resp = _create(client, auth(alice))
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    token = body["token"]
    assert token.startswith("skt_") and len(token) >= 4 + 43
    assert body["scopes"] == ["secrets:read"] and body["status"] == "active"
    row = app.extensions["scaivault"].db.one("SELECT * FROM personal_tokens WHERE id = :id", id=body["id"])
    assert bytes(row["token_hash"]) == hashlib.sha256(token.encode()).digest()
    assert token not in str(row)
    listed = client.get("/v1/auth/tokens", headers=auth(alice)).get_json()
    assert body["id"] in [t["id"] for t in listed["tokens"]]
    assert "token" not in listed["tokens"][0] and token not in str(listed)


def test_a_personal_token_acts_as_its_creator_with_the_scopes_it_was_given(client, auth, alice):
    token = _create(client, auth(alice), scopes=["secrets:read"]).get_json()["token"]
    me = client.get("/v1/auth/whoami", headers=auth(token)).get_json()
    assert me["identity_id"] == "user:alice.pat@acme.example"
    assert me["tenant_id"] == "tnt_pat" and me["partner_id"] == "ptn_pat"
    assert me["scopes"] == ["secrets:read"]


def test_a_personal_token_cannot_carry_more_scopes_than_its_creator_holds(client, auth, alice):
    resp = _create(client, auth(alice), scopes=["secrets:read", "admin"])
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "insufficient_scope"
    assert resp.get_json()["error"]["details"]["scopes_not_held"] == ["admin"]


def test_a_personal_token_can_make_a_narrower_one_but_not_a_wider_one(client, auth, alice):
    pat = _create(client, auth(alice), scopes=["secrets:read", "identity:read"]).get_json()["token"]
    assert _create(client, auth(pat), scopes=["identity:read"]).status_code == 201
    assert _create(client, auth(pat), scopes=["secrets:write"]).status_code == 403


@pytest.mark.parametrize("body,field", [
    ({"scopes": []}, "scopes"), ({"name": ""}, "name"), ({"expires_in": "soon"}, "expires_in"),
    ({"scopes": ["bad scope!"]}, "scopes.0"), ({"expires_in": 10}, "expires_in"),
])
def test_bad_token_requests_get_validation_errors(client, auth, alice, body, field):
    resp = _create(client, auth(alice), **body)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == "validation_error"


def test_malformed_json_is_invalid_request(client, auth, alice):
    resp = client.post("/v1/auth/tokens", data="{", headers={**auth(alice), "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_request"


def test_a_revoked_token_is_refused_on_a_second_instance_within_one_second(make_app, auth, alice):
    first, second = make_app().test_client(), make_app().test_client()
    created = _create(first, auth(alice)).get_json()
    pat = created["token"]
    assert second.get("/v1/auth/whoami", headers=auth(pat)).status_code == 200   # now cached there
    assert first.delete(f"/v1/auth/tokens/{created['id']}", headers=auth(alice)).status_code == 200
    deadline = time.monotonic() + 1.0
    while True:
        resp = second.get("/v1/auth/whoami", headers=auth(pat))
        if resp.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_revoked"


def test_an_expired_personal_token_is_token_expired(client, app, auth, alice):
    created = _create(client, auth(alice)).get_json()
    app.extensions["scaivault"].db.execute(
        "UPDATE personal_tokens SET expires_at = now() - interval '1 second' WHERE id = :id", id=created["id"])
    app.extensions["scaivault"].authenticator.invalidate()
    resp = client.get("/v1/auth/whoami", headers=auth(created["token"]))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_expired"


def test_an_unknown_personal_token_is_token_invalid(client, auth):
    resp = client.get("/v1/auth/whoami", headers=auth(personal_tokens.new_token_value()))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_invalid"


def test_nobody_revokes_someone_elses_token(client, scaikey, auth, alice):
    created = _create(client, auth(alice)).get_json()
    bob = scaikey.mint(sub="usr_pat_bob", email="bob@acme.example", tenant_id="tnt_pat", scopes=("secrets:read",))
    resp = client.delete(f"/v1/auth/tokens/{created['id']}", headers=auth(bob))
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == "token_not_found"


def test_the_dev_token_is_a_super_admin_with_every_scope(app, client, auth):
    token = personal_tokens.issue_dev_token(app.extensions["scaivault"])
    me = client.get("/v1/auth/whoami", headers=auth(token)).get_json()
    assert me["identity_id"] == "user:dev@localhost"
    assert "super_admin" in me["roles"]
    assert {"secrets:read", "secrets:write", "admin", "identity:admin"} <= set(me["scopes"])


def test_introspect_reports_active_and_inactive_tokens(client, scaikey, auth, alice):
    admin = scaikey.mint(sub="usr_intro", tenant_id="tnt_pat", partner_id="ptn_pat", scopes=("admin",),
                         role="tenant_admin")
    pat = _create(client, auth(alice)).get_json()["token"]
    body = client.post("/v1/auth/introspect", json={"token": pat}, headers=auth(admin)).get_json()
    assert body["active"] is True
    assert body["identity_id"] == "user:alice.pat@acme.example"
    assert body["scopes"] == ["secrets:read"] and body["expires_at"] and body["issued_at"]
    expired = scaikey.mint(sub="usr_x", tenant_id="tnt_pat", expires_in=-600)
    for token in (expired, "garbage", personal_tokens.new_token_value()):
        resp = client.post("/v1/auth/introspect", json={"token": token}, headers=auth(admin))
        assert resp.status_code == 200 and resp.get_json() == {"active": False}


def test_introspect_needs_the_admin_scope(client, auth, alice):
    resp = client.post("/v1/auth/introspect", json={"token": "x"}, headers=auth(alice))
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "insufficient_scope"


def test_without_scaikey_jwts_are_token_invalid_and_personal_tokens_work(base_env, scaikey, auth):
    from scaivault.app import create_app
    from scaivault.config import load_settings

    settings = load_settings({**base_env, "SCAIKEY_URL": ""}, dev_mode=True)
    assert settings.scaikey_url is None
    app = create_app(settings)
    try:
        client = app.test_client()
        resp = client.get("/v1/auth/whoami", headers=auth(scaikey.mint(sub="usr_devjwt", tenant_id="tnt_dev")))
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_invalid"
        token = personal_tokens.issue_dev_token(app.extensions["scaivault"])
        assert client.get("/v1/auth/whoami", headers=auth(token)).status_code == 200
    finally:
        app.extensions["scaivault"].close()


def test_with_redis_down_tokens_still_authenticate_and_revocation_still_holds(make_app, auth, alice):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")     # nothing listens there
    client = app.test_client()
    created = _create(client, auth(alice)).get_json()
    assert client.get("/v1/auth/whoami", headers=auth(created["token"])).status_code == 200
    app.extensions["scaivault"].db.execute("UPDATE personal_tokens SET revoked_at = now() WHERE id = :id",
                                           id=created["id"])
    time.sleep(0.6)   # one epoch check interval: without Redis the cache lives at most that long
    resp = client.get("/v1/auth/whoami", headers=auth(created["token"]))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"


def test_introspect_needs_an_admin_role_and_sees_only_tokens_within_its_reach(client, scaikey, auth, alice):
    pat = _create(client, auth(alice)).get_json()["token"]
    plain = scaikey.mint(sub="usr_intro_plain", tenant_id="tnt_pat", partner_id="ptn_pat", scopes=("admin",))
    resp = client.post("/v1/auth/introspect", json={"token": pat}, headers=auth(plain))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"
    # an admin of another tenant learns nothing about this tenant's tokens
    elsewhere = scaikey.mint(sub="usr_intro_else", tenant_id="tnt_pat_other", partner_id="ptn_pat_other",
                             scopes=("admin",), role="tenant_admin")
    for token in (pat, alice):
        resp = client.post("/v1/auth/introspect", json={"token": token}, headers=auth(elsewhere))
        assert resp.status_code == 200 and resp.get_json() == {"active": False}
