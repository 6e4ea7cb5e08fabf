"""Error codes of spec/20 section 8 on the secrets surface that other test files do not trigger."""
from __future__ import annotations

import pytest

from scaivault.config import DatabaseURL
from scaivault.migrate import MigrationRunner
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


def test_no_authorization_header_is_401_authentication_required(app):
    resp = app.test_client().get("/v1/secrets/app/db")
    assert resp.status_code == 401 and error_code(resp) == "authentication_required"
    assert resp.get_json()["error"]["request_id"] == resp.headers["X-Request-ID"]


def test_an_expired_token_is_401_token_expired(app, scaikey, auth):
    token = scaikey.mint(sub="usr_exp", email="exp@acme.example", tenant_id=new_tenant(), partner_id="ptn_test",
                         scopes=("secrets:read",), expires_in=-120)
    resp = app.test_client().get("/v1/secrets/app/db", headers=auth(token))
    assert resp.status_code == 401 and error_code(resp) == "token_expired"


def test_a_tampered_token_is_401_token_invalid(app, scaikey, auth):
    token = scaikey.mint(sub="usr_bad", email="bad@acme.example", tenant_id=new_tenant(), scopes=("secrets:read",))
    head, payload, sig = token.split(".")
    forged = f"{head}.{payload}.{sig[:-4]}AAAA"
    resp = app.test_client().get("/v1/secrets/app/db", headers=auth(forged))
    assert resp.status_code == 401 and error_code(resp) == "token_invalid"


def test_a_revoked_personal_token_is_401_token_revoked(app, scaikey, auth):
    client = app.test_client()
    jwt_token = scaikey.mint(sub="usr_pat", email="pat@acme.example", tenant_id=new_tenant(), partner_id="ptn_test",
                             scopes=("secrets:read",))
    created = client.post("/v1/auth/tokens", json={"name": "ci", "scopes": ["secrets:read"]}, headers=auth(jwt_token))
    assert created.status_code == 201, created.get_json()
    pat, token_id = created.get_json()["token"], created.get_json()["id"]
    assert client.delete(f"/v1/auth/tokens/{token_id}", headers=auth(jwt_token)).status_code == 200
    resp = client.get("/v1/secrets/app/db", headers=auth(pat))
    assert resp.status_code == 401 and error_code(resp) == "token_revoked"


def test_an_unknown_tenant_is_404_tenant_not_found_for_a_platform_admin(callers):
    root = callers.admin(new_tenant(), role="super_admin")
    resp = root.get("/v1/t/tnt_does_not_exist/secrets/app/db")
    assert resp.status_code == 404 and error_code(resp) == "tenant_not_found"


def test_a_foreign_tenant_is_403_access_denied_with_reason_cross_tenant(callers):
    user = callers.admin(new_tenant())
    resp = user.get(f"/v1/t/{new_tenant()}/secrets/app/db")
    assert resp.status_code == 403 and error_code(resp) == "access_denied"
    assert resp.get_json()["error"]["details"]["reason"] == "cross_tenant"


def test_an_unknown_rotation_policy_is_404_once_rotation_policies_exist(make_app, scaikey, fresh_database_url):
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url)).apply()
    app = make_app(DATABASE_URL=fresh_database_url, RATE_LIMITS=HIGH_RATE_LIMITS)
    db = app.extensions["scaivault"].db
    tenant = new_tenant()
    db.execute("INSERT INTO rotation_policies (id, tenant_id, name, interval_text, interval_seconds, grace_seconds) "
               "VALUES ('rot_known', :t, 'known', '30d', 2592000, 172800)", t=tenant)
    admin = Callers(scaikey, app.test_client()).admin(tenant)
    resp = admin.put("/v1/secrets/rot/a", json={"data": {"k": "v"}, "options": {"rotation_policy_id": "rot_unknown"}})
    assert resp.status_code == 404 and error_code(resp) == "rotation_policy_not_found"
    ok = admin.put("/v1/secrets/rot/a", json={"data": {"k": "v"}, "options": {"rotation_policy_id": "rot_known"}})
    assert ok.status_code == 201


def test_a_database_outage_is_503_service_unavailable_never_500(make_app, scaikey, auth):
    app = make_app(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere?sslmode=disable")
    token = scaikey.mint(sub="usr_down", email="down@acme.example", tenant_id=new_tenant(), scopes=("secrets:read",))
    resp = app.test_client().get("/v1/secrets/app/db", headers=auth(token))
    assert resp.status_code == 503 and error_code(resp) == "service_unavailable"


@pytest.mark.parametrize("method,url", [("POST", "/v1/secrets/app/db"), ("PATCH", "/v1/secrets/app/db"),
                                        ("POST", "/v1/secrets/app/db:versions")])
def test_a_wrong_method_is_405_in_the_envelope(callers, method, url):
    resp = callers.admin(new_tenant()).call(method, url)
    assert resp.status_code == 405 and error_code(resp) == "method_not_allowed"


def test_an_unknown_custom_method_is_invalid_path(callers):
    resp = callers.admin(new_tenant()).get("/v1/secrets/app/db:bogus")
    assert resp.status_code == 400 and error_code(resp) == "invalid_path"


def test_audit_failure_fails_closed_for_writes_and_reads(make_app, scaikey, fresh_database_url):
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url)).apply()
    app = make_app(DATABASE_URL=fresh_database_url, RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    admin = Callers(scaikey, app.test_client()).admin(tenant)
    assert admin.put("/v1/secrets/fc/kept", json={"data": {"value": "readable-before"}}).status_code == 201
    db = app.extensions["scaivault"].db
    db.execute("ALTER TABLE audit_log RENAME TO audit_log_away")
    try:
        write = admin.put("/v1/secrets/fc/new", json={"data": {"value": "must-not-stay"}})
        assert write.status_code == 503 and error_code(write) == "audit_unavailable"
        read = admin.get("/v1/secrets/fc/kept")
        assert read.status_code == 503 and error_code(read) == "audit_unavailable"
        assert b"readable-before" not in read.data
    finally:
        db.execute("ALTER TABLE audit_log_away RENAME TO audit_log")
    assert db.scalar("SELECT count(*) FROM secrets WHERE tenant_id = :t AND path = 'fc/new'", t=tenant) == 0
    assert admin.get("/v1/secrets/fc/kept").get_json()["data"] == {"value": "readable-before"}
