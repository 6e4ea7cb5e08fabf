"""Bearer JWTs from ScaiKey: signature, algorithms, expiry, issuer, audience, key rotation."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from tests.scaikey_standin import ScaiKeyStandin


def _whoami(client, headers):
    return client.get("/v1/auth/whoami", headers=headers)


def _code(resp):
    return resp.get_json()["error"]["code"]


def test_a_valid_rs256_token_yields_the_identity_of_its_claims(client, scaikey, auth):
    token = scaikey.mint(sub="usr_jwt1", email="alice@acme.example", tenant_id="tnt_jwt_a", partner_id="ptn_jwt",
                         scopes=("secrets:read", "secrets:write"))
    resp = _whoami(client, auth(token))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["identity_id"] == "user:alice@acme.example"
    assert body["identity_type"] == "user"
    assert body["tenant_id"] == "tnt_jwt_a"
    assert body["partner_id"] == "ptn_jwt"
    assert body["scopes"] == ["secrets:read", "secrets:write"]
    assert body["token_expires_at"].endswith("Z")


def test_an_es256_token_is_accepted(client, scaikey, auth):
    token = scaikey.mint(sub="usr_jwt_es", email="es@acme.example", tenant_id="tnt_jwt_a", alg="ES256")
    assert _whoami(client, auth(token)).status_code == 200


def test_a_missing_header_is_authentication_required(client):
    resp = client.get("/v1/auth/whoami")
    assert resp.status_code == 401
    assert _code(resp) == "authentication_required"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer a b", "token"])
def test_a_malformed_header_is_authentication_required(client, header):
    resp = client.get("/v1/auth/whoami", headers={"Authorization": header})
    assert resp.status_code == 401
    assert _code(resp) == "authentication_required"


def test_a_token_of_unknown_shape_is_authentication_required(client, auth):
    resp = _whoami(client, auth("opaque-token-value"))
    assert resp.status_code == 401
    assert _code(resp) == "authentication_required"


def test_a_forged_signature_is_token_invalid(client, scaikey, auth):
    token = scaikey.mint(sub="usr_forge", tenant_id="tnt_jwt_a")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    resp = _whoami(client, auth(f"{header}.{forged_payload}.{signature}"))
    assert resp.status_code == 401
    assert _code(resp) == "token_invalid"


def test_a_token_signed_by_another_key_with_a_known_kid_is_token_invalid(client, scaikey, auth):
    other = ScaiKeyStandin()  # same kid string reused by an attacker with their own key
    kid = scaikey.current_key("RS256").kid
    token = jwt.encode({"iss": scaikey.issuer, "sub": "usr_x", "exp": int(time.time()) + 60, "tenant_id": "tnt_jwt_a"},
                       other.current_key("RS256").private_key, algorithm="RS256", headers={"kid": kid})
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401
    assert _code(resp) == "token_invalid"


def test_alg_none_is_token_invalid(client, scaikey, auth):
    token = jwt.encode({"iss": scaikey.issuer, "sub": "usr_none", "exp": int(time.time()) + 60},
                       None, algorithm="none", headers={"kid": scaikey.current_key("RS256").kid})
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401
    assert _code(resp) == "token_invalid"


def test_hs256_signed_with_the_public_key_as_secret_is_token_invalid(client, scaikey, auth):
    key = scaikey.current_key("RS256")
    from cryptography.hazmat.primitives import serialization

    public_pem = key.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    payload = {"iss": scaikey.issuer, "sub": "usr_hs", "exp": int(time.time()) + 60, "scope": "admin"}
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    resp = _whoami(client, auth(f"{signing_input}.{b64(signature)}"))
    assert resp.status_code == 401
    assert _code(resp) == "token_invalid"


def test_an_expired_token_is_token_expired(client, scaikey, auth):
    token = scaikey.mint(sub="usr_old", tenant_id="tnt_jwt_a", expires_in=-120)
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401
    assert _code(resp) == "token_expired"


def test_a_token_expiring_within_the_clock_skew_is_still_accepted(client, scaikey, auth):
    token = scaikey.mint(sub="usr_skew", tenant_id="tnt_jwt_a", expires_in=-5)
    assert _whoami(client, auth(token)).status_code == 200


def test_a_token_not_valid_before_a_future_nbf_is_refused(client, scaikey, auth):
    token = scaikey.mint(sub="usr_nbf", tenant_id="tnt_jwt_a", nbf=int(time.time()) + 600)
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401
    assert _code(resp) == "token_invalid"


def test_a_wrong_issuer_is_refused(client, scaikey, auth):
    token = scaikey.mint(sub="usr_iss", tenant_id="tnt_jwt_a", iss="https://evil.example")
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401
    assert _code(resp) == "authentication_required"


def test_the_per_tenant_issuer_of_the_tokens_own_tenant_is_accepted(client, scaikey, auth):
    ok = scaikey.mint(sub="usr_iss2", tenant_id="tnt_jwt_a", iss=f"{scaikey.url}/tenants/tnt_jwt_a")
    assert _whoami(client, auth(ok)).status_code == 200
    other = scaikey.mint(sub="usr_iss2", tenant_id="tnt_jwt_a", iss=f"{scaikey.url}/tenants/tnt_someone_else")
    assert _code(_whoami(client, auth(other))) == "authentication_required"


def test_a_wrong_audience_is_refused_when_an_audience_is_configured(make_app, scaikey, auth):
    client = make_app(SCAIKEY_AUDIENCE="scaivault-prod,cli").test_client()
    wrong = scaikey.mint(sub="usr_aud", tenant_id="tnt_jwt_a", aud="some-other-app")
    resp = _whoami(client, auth(wrong))
    assert resp.status_code == 401
    assert _code(resp) == "token_invalid"
    right = scaikey.mint(sub="usr_aud", tenant_id="tnt_jwt_a", aud="cli")
    assert _whoami(client, auth(right)).status_code == 200
    listed = scaikey.mint(sub="usr_aud", tenant_id="tnt_jwt_a", aud=["x", "scaivault-prod"])
    assert _whoami(client, auth(listed)).status_code == 200


def test_an_unknown_kid_after_rotation_is_accepted_after_one_refetch(make_app, auth):
    standin = ScaiKeyStandin().start()
    try:
        client = make_app(SCAIKEY_URL=standin.url).test_client()
        first = standin.mint(sub="usr_rot", tenant_id="tnt_jwt_a")
        assert _whoami(client, auth(first)).status_code == 200
        fetches = standin.jwks_fetches
        standin.rotate(keep_old=False)
        rotated = standin.mint(sub="usr_rot", tenant_id="tnt_jwt_a", alg="ES256")
        assert _whoami(client, auth(rotated)).status_code == 200
        assert standin.jwks_fetches == fetches + 1
        # a token of a kid that is in no JWKS is refused without another refetch inside the interval
        bogus = jwt.encode({"iss": standin.issuer, "sub": "usr_rot", "exp": int(time.time()) + 60},
                           ScaiKeyStandin().current_key("RS256").private_key, algorithm="RS256",
                           headers={"kid": "never-published"})
        assert _code(_whoami(client, auth(bogus))) == "token_invalid"
        assert standin.jwks_fetches == fetches + 1
    finally:
        standin.stop()


def test_discovery_without_jwks_uri_falls_back_to_the_platform_jwks_path(make_app, auth):
    standin = ScaiKeyStandin(discovery_has_jwks_uri=False).start()
    try:
        client = make_app(SCAIKEY_URL=standin.url).test_client()
        assert _whoami(client, auth(standin.mint(sub="usr_fb", tenant_id="tnt_jwt_a"))).status_code == 200
        assert ("GET", "/api/v1/platform/.well-known/jwks.json") in standin.requests
    finally:
        standin.stop()


def test_scaikey_jwks_url_overrides_discovery(make_app, auth):
    standin = ScaiKeyStandin().start()
    try:
        client = make_app(SCAIKEY_URL=standin.url, SCAIKEY_JWKS_URL=standin.url + "/.well-known/jwks.json").test_client()
        assert _whoami(client, auth(standin.mint(sub="usr_ov", tenant_id="tnt_jwt_a"))).status_code == 200
        assert ("GET", "/.well-known/jwks.json") in standin.requests
    finally:
        standin.stop()


def test_a_verified_token_is_not_reverified_on_the_next_request(app, scaikey, auth):
    client = app.test_client()
    token = scaikey.mint(sub="usr_hot", tenant_id="tnt_jwt_a")
    assert _whoami(client, auth(token)).status_code == 200
    verifier = app.extensions["scaivault"].authenticator.verifier
    calls = []
    original = verifier.verify
    verifier.verify = lambda t: calls.append(t) or original(t)
    for _ in range(5):
        assert _whoami(client, auth(token)).status_code == 200
    assert calls == []


def test_a_service_token_maps_to_a_service_account(client, scaikey, auth):
    token = scaikey.mint_service("cli_reporting", scopes=("secrets:read",), tenant_id="tnt_jwt_a")
    body = _whoami(client, auth(token)).get_json()
    assert body["identity_type"] == "service_account"
    assert body["identity_id"] == "sa:cli_reporting"


def test_the_role_claim_is_reported_in_roles(client, scaikey, auth):
    token = scaikey.mint(sub="usr_ta", tenant_id="tnt_jwt_a", role="tenant_admin")
    assert _whoami(client, auth(token)).get_json()["roles"] == ["tenant_admin"]


def test_a_groups_claim_becomes_group_identities(client, scaikey, auth):
    token = scaikey.mint(sub="usr_grp", tenant_id="tnt_jwt_a", groups=("sre", "group:oncall"))
    assert _whoami(client, auth(token)).get_json()["groups"] == ["group:sre", "group:oncall"]


@pytest.mark.parametrize("claims", [
    {"tenant_id": "tnt/../evil"}, {"tenant_id": "x" * 65}, {"partner_id": "p\x00"},
    {"email": "a\x00b@c.d"}, {"sub": "usr_\n"},
])
def test_malformed_ids_in_a_signed_token_are_token_invalid_never_500(client, scaikey, auth, claims):
    base = {"sub": "usr_malformed", "tenant_id": "tnt_jwt_a"}
    token = scaikey.mint(**{**base, **claims})
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_invalid"


def test_odd_claim_types_do_not_break_derivation(client, scaikey, auth):
    token = scaikey.mint(sub="usr_odd", tenant_id="tnt_jwt_a", groups=None, scope=["secrets:read", 5],
                         name={"x": 1}, act={"sub": "usr_boss"}, role="emperor")
    token2 = scaikey.mint(sub="usr_odd2", tenant_id="tnt_jwt_a", groups="not-a-list", email=7)
    for t in (token, token2):
        assert _whoami(client, auth(t)).status_code == 200
    assert _whoami(client, auth(token)).get_json()["roles"] == []


def test_an_unreachable_scaikey_is_503_for_jwts_while_personal_tokens_keep_working(make_app, scaikey, auth):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    app = make_app(SCAIKEY_URL=dead)
    client = app.test_client()
    resp = _whoami(client, auth(scaikey.mint(sub="usr_down", tenant_id="tnt_jwt_a")))
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "service_unavailable"
    from scaivault.auth import personal_tokens

    pat = personal_tokens.issue_dev_token(app.extensions["scaivault"])
    assert _whoami(client, auth(pat)).status_code == 200


def test_known_keys_keep_working_when_a_jwks_refresh_fails(make_app, auth):
    standin = ScaiKeyStandin().start()
    client = make_app(SCAIKEY_URL=standin.url).test_client()
    token = standin.mint(sub="usr_keep", tenant_id="tnt_jwt_a")
    assert _whoami(client, auth(token)).status_code == 200
    standin.stop()   # ScaiKey goes away; a new token with a known kid still verifies from the cache
    assert _whoami(client, auth(standin.mint(sub="usr_keep2", tenant_id="tnt_jwt_a"))).status_code == 200


def test_a_kid_of_one_key_type_used_with_the_other_algorithm_is_token_invalid(client, scaikey, auth):
    ec_key = scaikey.current_key("ES256")
    rsa_kid = scaikey.current_key("RS256").kid
    token = jwt.encode({"iss": scaikey.issuer, "sub": "usr_mix", "exp": int(time.time()) + 60, "tenant_id": "tnt_jwt_a"},
                       ec_key.private_key, algorithm="ES256", headers={"kid": rsa_kid})
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401 and _code(resp) == "token_invalid"


@pytest.mark.parametrize("alg", ["HS256", "RS512", "ES384", "PS256", "EdDSA"])
def test_only_rs256_and_es256_are_accepted(client, scaikey, auth, alg):
    header = base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": scaikey.current_key("RS256").kid}).encode())
    payload = base64.urlsafe_b64encode(json.dumps({"iss": scaikey.issuer, "sub": "u", "exp": int(time.time()) + 60}).encode())
    token = f"{header.rstrip(b'=').decode()}.{payload.rstrip(b'=').decode()}.c2ln"
    resp = _whoami(client, auth(token))
    assert resp.status_code == 401 and _code(resp) == "token_invalid"


def test_mfa_verified_at_comes_from_amr_and_auth_time(client, scaikey, auth):
    at = int(time.time()) - 300
    with_mfa = scaikey.mint(sub="usr_mfa", tenant_id="tnt_jwt_a", amr=["pwd", "otp"], auth_time=at)
    body = _whoami(client, auth(with_mfa)).get_json()
    assert body["mfa_verified_at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(at)))
    without = scaikey.mint(sub="usr_mfa", tenant_id="tnt_jwt_a", amr=["pwd"], auth_time=at)
    assert _whoami(client, auth(without)).get_json()["mfa_verified_at"] is None


def test_user_identity_ids_are_lower_cased_emails(client, scaikey, auth):
    token = scaikey.mint(sub="usr_case", email="Mixed.Case@Acme.Example", tenant_id="tnt_jwt_a")
    assert _whoami(client, auth(token)).get_json()["identity_id"] == "user:mixed.case@acme.example"
