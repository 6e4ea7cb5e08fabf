"""GET /v1/system/keys and POST /v1/system/keys/rotate over HTTP with ScaiKey-signed tokens."""
from __future__ import annotations

import pytest

from scaivault.crypto import SealContext
from scaivault.identity import store
from tests.fakes.keyrings import migrated_database


@pytest.fixture
def keys_app(databases, make_app, tmp_path):
    db_url = migrated_database(databases)
    return make_app(DATABASE_URL=db_url, KMS_LOCAL_KEY_FILE=str(tmp_path / "root.key"))


def token(scaikey, role=None, scopes=("admin",), partner="ptn_acme"):
    return scaikey.mint(sub="usr_ops", email="ops@acme.example", tenant_id="tnt_ops", partner_id=partner,
                        scopes=scopes, role=role)


def test_super_admin_rotates_the_root_and_values_stay_readable(keys_app, scaikey, auth):
    keyring = keys_app.extensions["scaivault"].keyring
    ctx = SealContext("ptn_acme", "tnt_blue", "secret", "a/b", 1)
    sealed = keyring.seal(ctx, b"still here")
    client = keys_app.test_client()
    response = client.post("/v1/system/keys/rotate", json={}, headers=auth(token(scaikey, "super_admin")))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["kind"] == "root" and body["version"] == 2 and body["rewrapped"] == 1
    assert keyring.open(ctx, sealed) == b"still here"
    audit = keyring.db.one("SELECT action, identity_id, success FROM audit_log WHERE action = 'rotate' ORDER BY ts DESC LIMIT 1")
    assert audit["identity_id"] == "user:ops@acme.example" and audit["success"] is True

    listing = client.get("/v1/system/keys", headers=auth(token(scaikey, "super_admin")))
    assert listing.status_code == 200
    keys = listing.get_json()
    assert keys["encryption"]["status"] == "ok"
    assert [r["status"] for r in keys["roots"]] == ["active", "retired"]
    assert keys["partners"][0]["partner_id"] == "ptn_acme"
    assert keys["partners"][0]["tenant_keys"][0] == {**keys["partners"][0]["tenant_keys"][0], "version": 1,
                                                     "status": "active", "tenant_id": "tnt_blue"}
    assert "wrapped" not in keys["partners"][0] and "commitment" not in str(keys)


def test_a_partner_admin_rotates_its_own_tenant_key_only(keys_app, scaikey, auth):
    keyring = keys_app.extensions["scaivault"].keyring
    keyring.seal(SealContext("ptn_acme", "tnt_blue", "secret", "x", 1), b"v")
    with keys_app.extensions["scaivault"].db.transaction() as s:
        store.upsert_tenant(s, {"id": "tnt_blue", "partner_id": "ptn_acme"})
        store.upsert_tenant(s, {"id": "tnt_x", "partner_id": "ptn_other"})
    client = keys_app.test_client()
    headers = auth(token(scaikey, "partner_admin"))
    ok = client.post("/v1/system/keys/rotate", json={"scope": "tenant", "tenant_id": "tnt_blue"}, headers=headers)
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["version"] == 2
    other = client.post("/v1/system/keys/rotate", json={"scope": "tenant", "tenant_id": "tnt_x",
                                                        "partner_id": "ptn_other"}, headers=headers)
    # another partner's tenant looks exactly like one that does not exist (F7)
    assert other.status_code == 404 and other.get_json()["error"]["code"] == "tenant_not_found"
    root = client.post("/v1/system/keys/rotate", json={"scope": "root"}, headers=headers)
    assert root.status_code == 403 and root.get_json()["error"]["code"] == "forbidden"


def test_system_endpoints_refuse_callers_without_an_admin_role(keys_app, scaikey, auth):
    client = keys_app.test_client()
    headers = auth(token(scaikey, None))
    for method, path in (("get", "/v1/system/keys"), ("get", "/v1/system/plugins"),
                         ("post", "/v1/system/keys/rotate")):
        response = getattr(client, method)(path, json={} if method == "post" else None, headers=headers)
        assert response.status_code == 403, path
        assert response.get_json()["error"]["code"] == "forbidden"
    no_scope = client.get("/v1/system/keys", headers=auth(token(scaikey, "super_admin", scopes=("secrets:read",))))
    assert no_scope.status_code == 403 and no_scope.get_json()["error"]["code"] == "insufficient_scope"
    anonymous = client.get("/v1/system/keys")
    assert anonymous.status_code == 401


@pytest.mark.parametrize("body,code", [
    ({"scope": "everything"}, "validation_error"),
    ({"scope": "tenant", "tenant_id": "../etc"}, "validation_error"),
    ({"unexpected": 1}, "validation_error"),
    ({"scope": "root", "tenant_id": "tnt_x"}, "invalid_request"),
])
def test_bad_rotation_requests_get_the_error_envelope(keys_app, scaikey, auth, body, code):
    response = keys_app.test_client().post("/v1/system/keys/rotate", json=body,
                                           headers=auth(token(scaikey, "super_admin")))
    assert response.get_json()["error"]["code"] == code
    assert response.status_code in (400, 422)


def test_malformed_json_gets_the_error_envelope(keys_app, scaikey, auth):
    response = keys_app.test_client().post("/v1/system/keys/rotate", data=b"{nope",
                                           headers={**auth(token(scaikey, "super_admin")),
                                                    "Content-Type": "application/json"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_request"


def test_a_refused_rotation_is_audited_as_a_failure(keys_app, scaikey, auth):
    from scaivault.crypto.rotation import ROTATION_LOCK_KEY

    keyring = keys_app.extensions["scaivault"].keyring
    keyring.ensure_root()
    with keyring.db.session() as s:
        s.scalar("SELECT pg_advisory_lock(:k)", k=ROTATION_LOCK_KEY)
        try:
            response = keys_app.test_client().post("/v1/system/keys/rotate", json={},
                                                   headers=auth(token(scaikey, "super_admin")))
        finally:
            s.scalar("SELECT pg_advisory_unlock(:k)", k=ROTATION_LOCK_KEY)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "rotation_in_progress"
    audit = keyring.db.one("SELECT success FROM audit_log WHERE action = 'rotate' ORDER BY ts DESC LIMIT 1")
    assert audit["success"] is False


def test_a_partner_admin_sees_only_its_own_partner_keys(keys_app, scaikey, auth):
    keyring = keys_app.extensions["scaivault"].keyring
    keyring.seal(SealContext("ptn_acme", "tnt_blue", "secret", "x", 1), b"v")
    keyring.seal(SealContext("ptn_other", "tnt_red", "secret", "x", 1), b"v")
    response = keys_app.test_client().get("/v1/system/keys", headers=auth(token(scaikey, "partner_admin")))
    assert response.status_code == 200
    body = response.get_json()
    assert [p["partner_id"] for p in body["partners"]] == ["ptn_acme"]
    assert set(body["roots"][0]) == {"version", "status", "activated_at"}      # no key references
    everyone = keys_app.test_client().get("/v1/system/keys", headers=auth(token(scaikey, "super_admin")))
    assert {p["partner_id"] for p in everyone.get_json()["partners"]} == {"ptn_acme", "ptn_other"}
