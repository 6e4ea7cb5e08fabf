"""Token exchange: foreign OIDC tokens (GitHub Actions, Kubernetes) -> scoped ScaiVault tokens."""
from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta

import pytest

from scaivault.auth.foreign_jwks import ForeignKeys, fetch_json
from scaivault.errors import ScaiVaultError
from tests.oidc_issuer import OidcIssuer
from tests.dynamic_support import TenantEnv
from tests.secrets_support import error_code, grant

JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ADMIN_SCOPES = ("admin", "secrets:read", "secrets:write", "secrets:list", "policies:read", "policies:write",
                "dynamic:read")


@pytest.fixture(scope="module")
def github():
    issuer = OidcIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def kubernetes():
    issuer = OidcIssuer(jwks_path="/openid/v1/jwks").start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def env(make_app, scaikey, github, kubernetes):
    e = TenantEnv(make_app(), scaikey, ADMIN_SCOPES)
    admin = e.admin
    resp = admin.post("/v1/auth/trust", json={
        "name": "billing-deploy", "issuer": github.url, "audience": "scaivault",
        "conditions": {"repository": "acme/billing", "ref": "refs/heads/*"},
        "identity": "sa:github-deployer-billing", "max_scopes": ["secrets:read", "secrets:list"], "ttl": "1h"})
    assert resp.status_code == 201, resp.get_json()
    e.github_rule = resp.get_json()
    resp = admin.post("/v1/auth/trust", json={
        "name": "payments-pods", "issuer": kubernetes.url, "jwks_url": kubernetes.url + "/openid/v1/jwks",
        "audience": "scaivault", "conditions": {"sub": "system:serviceaccount:payments:*"},
        "identity": "sa:payments", "max_scopes": ["secrets:read"], "ttl": "15m"})
    assert resp.status_code == 201, resp.get_json()
    admin.put("/v1/secrets/environments/production/billing/db", json={"data": {"password": "s3cret-billing"}})
    grant(admin, "sa:github-deployer-billing",
          [{"path_pattern": "environments/production/billing/**", "permissions": ["read", "list"]}])
    return e


def _exchange(env, token, **extra):
    return env.client.post("/v1/auth/exchange", json={"subject_token": token, "subject_token_type": JWT_TYPE, **extra})


def _bearer(env, token):
    return {"Authorization": f"Bearer {token}"}


def test_a_github_token_from_an_allowed_repository_gets_a_scoped_scaivault_token(env, github):
    resp = _exchange(env, github.github("acme/billing", environment=None, ref="refs/heads/main"))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    token = body["access_token"]
    me = env.client.get("/v1/auth/whoami", headers=_bearer(env, token)).get_json()
    assert me["identity_id"] == "sa:github-deployer-billing" and me["tenant_id"] == env.tenant
    assert set(me["scopes"]) == {"secrets:read", "secrets:list"} and me["roles"] == []
    identity = env.runtime.authenticator.authenticate(token)
    assert identity.principal == (f"{env.tenant}/exchange:{env.github_rule['id']}:"
                                  f"{github.url}#repo:acme/billing:ref:refs/heads/main")
    read = env.client.get("/v1/secrets/environments/production/billing/db", headers=_bearer(env, token))
    assert read.status_code == 200 and read.get_json()["data"]["password"] == "s3cret-billing"
    # never more than the rule allows: no write scope, and policies still apply
    write = env.client.put("/v1/secrets/environments/production/billing/db", json={"data": {"x": "y"}},
                           headers=_bearer(env, token))
    assert write.status_code == 403 and error_code(write) == "insufficient_scope"
    other = env.client.get("/v1/secrets/elsewhere/thing", headers=_bearer(env, token))
    assert other.status_code == 403


def test_the_exchange_is_audited_with_the_foreign_issuer_and_subject(env, github):
    token = github.github("acme/billing", environment=None)
    resp = _exchange(env, token)
    assert resp.status_code == 200
    rows = env.runtime.db.query("""SELECT * FROM audit_log WHERE tenant_id = :t AND action = 'token_exchange'
                                    ORDER BY ts DESC LIMIT 1""", t=env.tenant)
    extra = rows[0]["extra_data"]
    assert rows[0]["identity_id"] == "sa:github-deployer-billing"
    assert extra["foreign_issuer"] == github.url and extra["foreign_subject"] == "repo:acme/billing:ref:refs/heads/main"
    assert resp.get_json()["access_token"] not in str(rows[0]) and token not in str(rows[0])
    # requests made with the exchanged token name whom it acts for
    env.client.get("/v1/secrets/environments/production/billing/db", headers=_bearer(env, resp.get_json()["access_token"]))
    read = env.runtime.db.query("""SELECT extra_data FROM audit_log WHERE tenant_id = :t AND action = 'read'
                                    AND identity_id = 'sa:github-deployer-billing' ORDER BY ts DESC LIMIT 1""",
                                t=env.tenant)
    assert read[0]["extra_data"]["acting_for"].startswith(github.url + "#repo:acme/billing")


def test_a_github_token_from_another_repository_is_refused_401(env, github):
    resp = _exchange(env, github.github("acme/other-repo", environment=None))
    assert resp.status_code == 401 and error_code(resp) == "token_invalid"
    assert "request_id" in resp.get_json()["error"]


def test_a_branch_outside_the_ref_glob_is_refused(env, github):
    resp = _exchange(env, github.github("acme/billing", environment=None, ref="refs/tags/v1"))
    assert resp.status_code == 401


def test_an_expired_token_is_refused_401_token_expired(env, github):
    resp = _exchange(env, github.github("acme/billing", environment=None, exp=int(time.time()) - 600))
    assert resp.status_code == 401 and error_code(resp) == "token_expired"


def test_a_wrong_audience_is_refused_401(env, github):
    resp = _exchange(env, github.github("acme/billing", environment=None, aud="someone-else"))
    assert resp.status_code == 401 and error_code(resp) == "token_invalid"


def test_an_unknown_issuer_is_refused_401_and_never_contacted(env):
    stranger = OidcIssuer().start()
    try:
        resp = _exchange(env, stranger.github("acme/billing", environment=None))
        assert resp.status_code == 401 and error_code(resp) == "token_invalid"
        assert stranger.discovery_fetches == 0 and stranger.jwks_fetches == 0
    finally:
        stranger.stop()


def test_a_token_claiming_a_trusted_issuer_but_signed_by_another_key_is_refused(env, github):
    impostor = OidcIssuer().start()
    try:
        forged = impostor.github("acme/billing", environment=None, issuer=github.url)
        resp = _exchange(env, forged)
        assert resp.status_code == 401 and error_code(resp) == "token_invalid"
    finally:
        impostor.stop()


def test_kubernetes_service_account_tokens_es256_through_an_explicit_jwks_url(env, kubernetes):
    resp = _exchange(env, kubernetes.kubernetes("payments", "api", alg="ES256"))
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["expires_in"] == 900
    me = env.client.get("/v1/auth/whoami", headers=_bearer(env, resp.get_json()["access_token"])).get_json()
    assert me["identity_id"] == "sa:payments" and me["scopes"] == ["secrets:read"]
    assert _exchange(env, kubernetes.kubernetes("payments", "api", alg="RS256")).status_code == 200
    refused = _exchange(env, kubernetes.kubernetes("default", "api"))
    assert refused.status_code == 401
    assert kubernetes.discovery_fetches == 0          # jwks_url overrides discovery


def test_requested_scopes_are_cut_to_the_rule(env, github):
    token = github.github("acme/billing", environment=None)
    resp = _exchange(env, token, scopes=["secrets:read", "secrets:write"])
    assert resp.status_code == 200 and resp.get_json()["scope"] == "secrets:read"
    resp = _exchange(env, github.github("acme/billing", environment=None), scopes=["secrets:write"])
    assert resp.status_code == 403 and error_code(resp) == "insufficient_scope"


def test_the_rfc_8693_form_encoding_is_accepted(env, github):
    resp = env.client.post("/v1/auth/exchange", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token_type": JWT_TYPE,
        "subject_token": github.github("acme/billing", environment=None), "scope": "secrets:list"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["scope"] == "secrets:list"


def test_malformed_exchange_requests_get_the_envelope(env):
    assert error_code(env.client.post("/v1/auth/exchange", json={"subject_token": "x"})) == "validation_error"
    resp = env.client.post("/v1/auth/exchange", json={"subject_token": "not-a-jwt", "subject_token_type": JWT_TYPE})
    assert resp.status_code == 401 and error_code(resp) == "token_invalid"
    resp = env.client.post("/v1/auth/exchange", json={"subject_token": "x", "subject_token_type": "urn:other"})
    assert resp.status_code == 400


def test_an_exchanged_token_expires_and_dies_with_its_rule(env, github, make_app):
    resp = env.admin.post("/v1/auth/trust", json={
        "name": "short", "issuer": github.url, "audience": "short-lived", "identity": "sa:short",
        "conditions": {"repository": "acme/*"},
        "max_scopes": ["secrets:read"], "ttl": "1m"})
    assert resp.status_code == 201
    token = _exchange(env, github.github("acme/x", environment=None, aud="short-lived")).get_json()["access_token"]
    assert env.client.get("/v1/auth/whoami", headers=_bearer(env, token)).status_code == 200
    later = make_app()
    later.extensions["scaivault"].token_exchange.clock = lambda: __import__("datetime").datetime.now(
        __import__("datetime").timezone.utc) + timedelta(minutes=2)
    resp = later.test_client().get("/v1/auth/whoami", headers=_bearer(env, token))
    assert resp.status_code == 401 and error_code(resp) == "token_expired"
    assert env.admin.delete("/v1/auth/trust/short").status_code == 200
    fresh = make_app().test_client().get("/v1/auth/whoami", headers=_bearer(env, token))
    assert fresh.status_code == 401


def test_trust_rules_are_managed_by_tenant_admins_only(env, github):
    user = env.callers.user(f"dev-{secrets.token_hex(3)}@{env.tenant}.example", env.tenant, scopes=ADMIN_SCOPES)
    assert user.get("/v1/auth/trust").status_code == 403
    listed = env.admin.get("/v1/auth/trust").get_json()["rules"]
    assert {"billing-deploy", "payments-pods"} <= {r["name"] for r in listed}
    got = env.admin.get("/v1/auth/trust/billing-deploy").get_json()
    assert got["identity"] == "sa:github-deployer-billing" and got["ttl"] == 3600
    patched = env.admin.patch(f"/v1/auth/trust/{got['id']}", json={"ttl": "30m"})
    assert patched.status_code == 200 and patched.get_json()["ttl"] == 1800
    assert env.admin.patch(f"/v1/auth/trust/{got['id']}", json={"ttl": "1h"}).status_code == 200


@pytest.mark.parametrize("change, code", [
    ({"issuer": "http://issuer.example.com"}, "invalid_config"),
    ({"max_scopes": ["admin"]}, "invalid_config"),
    ({"max_scopes": ["secrets:delete"]}, "insufficient_scope"),
    ({"identity": "user:alice@example.com"}, "invalid_config"),
    ({"ttl": "2d"}, "invalid_duration"),
    ({"conditions": {}}, "invalid_config"),
])
def test_a_bad_trust_rule_is_refused(env, github, change, code):
    body = {"name": "bad-" + secrets.token_hex(3), "issuer": github.url, "audience": "a", "identity": "sa:x",
            "conditions": {"repository": "acme/x"}, "max_scopes": ["secrets:read"], **change}
    resp = env.admin.post("/v1/auth/trust", json=body)
    assert error_code(resp) == code, resp.get_json()


# ---------------------------------------------------------------- fetching foreign keys
def test_fetching_a_slow_issuer_is_bounded_in_time():
    slow = OidcIssuer(trickle=0.2).start()          # about 10 s to send its JWKS, a few bytes at a time
    try:
        started = time.monotonic()
        with pytest.raises(ScaiVaultError) as caught:
            fetch_json(slow.url + "/.well-known/jwks", deadline_seconds=1.0)
        assert caught.value.code == "service_unavailable"
        assert time.monotonic() - started < 2.5
    finally:
        slow.stop()


def test_a_slow_issuer_does_not_hold_up_keys_of_another(github):
    slow = OidcIssuer(trickle=0.05).start()          # about 3 s to answer
    keys = ForeignKeys()
    try:
        worker = threading.Thread(target=lambda: keys.key(slow.url + "/.well-known/jwks", "x"), daemon=True)
        worker.start()
        time.sleep(0.2)
        started = time.monotonic()
        kid = github.keys["RS256"][0]
        assert keys.key(github.url + "/.well-known/jwks", kid) is not None
        assert time.monotonic() - started < 1.0
        worker.join(10)
    finally:
        slow.stop()


def test_an_exchanged_token_cannot_mint_a_longer_lived_personal_token(env, github):
    token = _exchange(env, github.github("acme/billing", environment=None)).get_json()["access_token"]
    resp = env.client.post("/v1/auth/tokens", json={"name": "escape", "scopes": ["secrets:read"]},
                           headers=_bearer(env, token))
    assert resp.status_code == 403 and error_code(resp) == "forbidden"


def test_another_tenant_sees_none_of_the_trust_rules(env):
    from tests.secrets_support import new_tenant

    other_tenant = new_tenant()
    other = env.callers.user(f"admin@{other_tenant}.example", other_tenant, scopes=ADMIN_SCOPES, role="tenant_admin")
    assert other.get("/v1/auth/trust").get_json()["rules"] == []
    assert error_code(other.get("/v1/auth/trust/billing-deploy")) == "trust_rule_not_found"
    assert error_code(other.delete("/v1/auth/trust/billing-deploy")) == "trust_rule_not_found"
    assert env.admin.get("/v1/auth/trust/billing-deploy").status_code == 200


def test_a_refused_exchange_from_a_trusted_issuer_is_audited_in_the_rules_tenant(env, github):
    assert _exchange(env, github.github("acme/intruder", environment=None)).status_code == 401
    rows = env.runtime.db.query("""SELECT * FROM audit_log WHERE tenant_id = :t AND action = 'token_exchange'
                                      AND success = false ORDER BY ts DESC LIMIT 1""", t=env.tenant)
    assert rows and rows[0]["identity_type"] == "anonymous" and rows[0]["identity_id"] is None
    assert rows[0]["extra_data"]["foreign_subject"] == "repo:acme/intruder:ref:refs/heads/main"
    assert rows[0]["extra_data"]["error"] == "conditions_not_met"
