"""Issue 9, part B: each malformed input of the review (F13), the unsigned webhook fields (F14),
`//` in a path, and the wildcard limit (F5), replayed; each must now fail to do harm."""
from __future__ import annotations

import base64
import json
import secrets

import pytest

from scaivault.config import ConfigError, load_settings
from tests.secrets_support import HIGH_RATE_LIMITS

ALL_SCOPES = ("secrets:read", "secrets:write", "secrets:delete", "secrets:list", "policies:read", "policies:write",
              "audit:read", "audit:export", "identity:read", "identity:admin", "admin")


def _b64(doc) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


@pytest.fixture(scope="module")
def root(make_app, scaikey):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = "tnt_in_" + secrets.token_hex(4)
    token = scaikey.mint(sub="usr_in_" + secrets.token_hex(4), email=f"root@{tenant}.example", tenant_id=tenant,
                         partner_id="ptn_in", scopes=ALL_SCOPES, role="super_admin")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.put("/v1/secrets/a/b", json={"data": {"k": "v"}}, headers=headers).status_code == 201
    return client, headers


REVIEW_INPUTS = [
    # NUL inside base64 cursors
    ("GET", "/v1/secrets?cursor=" + _b64({"after": "\u0000"}), None, "invalid_cursor"),
    ("GET", "/v1/policies?cursor=" + _b64({"after": "\u0000"}), None, "invalid_cursor"),
    ("GET", "/v1/secrets?cursor=" + _b64({"after": "\ud800"}), None, "invalid_cursor"),
    ("GET", "/v1/audit/logs?cursor=" + _b64(["2026-01-01T00:00:00.000000Z", "log_\u0000"]), None, "invalid_cursor"),
    # %00 in ids and query values
    ("GET", "/v1/identity/groups/%00/members", None, "invalid_request"),
    ("GET", "/v1/identity/resolve/user/%00", None, "invalid_request"),
    ("GET", "/v1/identity/users/%00", None, "invalid_request"),
    ("GET", "/v1/identity/tenants?status=%00", None, "invalid_request"),
    ("DELETE", "/v1/auth/tokens/pat_%00", None, "invalid_request"),
    ("GET", "/v1/policies/pol_%00", None, "invalid_request"),
    ("GET", "/v1/audit/exports/exp_%00", None, "invalid_request"),
    ("GET", "/v1/system/keys?partner_id=%00", None, "invalid_request"),
    # lone surrogates in data, metadata, policy names, export filters
    ("PUT", "/v1/secrets/a/c", {"data": {"k": "\ud800"}}, "invalid_request"),
    ("PUT", "/v1/secrets/a/c", {"data": {"\udc00": "x"}}, "invalid_request"),
    ("PUT", "/v1/secrets/a/c", {"data": {"k": "v"}, "metadata": {"description": "\ud800"}}, "invalid_request"),
    ("POST", "/v1/policies", {"name": "\ud800", "rules": [{"path_pattern": "a", "permissions": ["read"]}]},
     "invalid_request"),
    ("POST", "/v1/audit/export", {"format": "jsonl", "filters": {"identity_id": "\ud800"}}, "invalid_request"),
    # huge durations
    ("POST", "/v1/auth/tokens", {"name": "x", "scopes": ["secrets:read"], "expires_in": "99999999999d"},
     "validation_error"),
    ("GET", "/v1/secrets?expires_within=99999999999d", None, "invalid_duration"),
    ("PUT", "/v1/secrets/a/c", {"data": {"k": "v"}, "options": {"expires_in": "99999999999d"}}, "invalid_duration"),
    # integers beyond PostgreSQL's integer
    ("POST", "/v1/secrets/a/b:destroy", {"versions": [2147483648]}, "validation_error"),
    ("POST", "/v1/secrets/batch", {"paths": ["a/b"], "options": {"version": 9191813186}}, "validation_error"),
    ("GET", "/v1/secrets/a/b?version=2147483648", None, "invalid_request"),
    # Unicode digits that str.isdigit() accepts and int() refuses
    ("GET", "/v1/secrets/a/b?version=%C2%B2", None, "invalid_request"),
    ("GET", "/v1/identity/tenants?page=%C2%B2", None, "validation_error"),
    ("GET", "/v1/secrets?limit=%C2%B2", None, "invalid_request"),
    ("POST", "/v1/policies", {"name": "tw", "rules": [{"path_pattern": "a", "permissions": ["read"], "conditions": {
        "time_window": {"start": "0\u00b2:00", "end": "10:00"}}}]}, "invalid_policy"),
    # timestamps that overflow when moved to UTC
    ("GET", "/v1/audit/logs?from=0001-01-01T00:00:00%2B14:00", None, "validation_error"),
    ("GET", "/v1/audit/summary?from=0001-01-01T00:00:00%2B14:00", None, "validation_error"),
    # strict request models: a boolean or a string is not a number
    ("PUT", "/v1/secrets/a/c", {"data": {"k": "v"}, "options": {"cas": True}}, "validation_error"),
    ("PUT", "/v1/secrets/a/c", {"data": {"k": "v"}, "options": {"cas": "2"}}, "validation_error"),
    ("POST", "/v1/secrets/batch", {"paths": ["a/b"], "options": {"include_metadata": "yes"}}, "validation_error"),
]


@pytest.mark.parametrize("method,url,body,code", REVIEW_INPUTS,
                         ids=[f"{m} {u[:50]} {json.dumps(b)[:40] if b else ''}" for m, u, b, _ in REVIEW_INPUTS])
def test_each_malformed_input_of_the_review_gets_its_4xx_code(root, method, url, body, code):
    client, headers = root
    resp = client.open(url, method=method, headers=headers,
                       data=json.dumps(body) if body is not None else None, content_type="application/json")
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.data[:300])
    assert resp.get_json()["error"]["code"] == code, resp.get_json()


@pytest.mark.parametrize("raw", [b'{"data": {"k": NaN}}', b'{"data": {"k": Infinity}}', b'{"data": {"k": -Infinity}}',
                                 b'{"data": {"k": "v"}}\xff', b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_bodies_that_are_not_json_are_invalid_request(root, raw):
    client, headers = root
    resp = client.put("/v1/secrets/a/nan", data=raw, headers=headers, content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_request", resp.get_json()


def test_a_nul_stays_allowed_inside_sealed_secret_data(root):
    client, headers = root
    assert client.put("/v1/secrets/a/nul", json={"data": {"k": "a\u0000b"}}, headers=headers).status_code == 201
    assert client.get("/v1/secrets/a/nul", headers=headers).get_json()["data"] == {"k": "a\u0000b"}
    refused = client.put("/v1/secrets/a/nul", json={"data": {"k": "v"}, "metadata": {"owner": "a\u0000"}},
                         headers=headers)
    assert refused.status_code == 400 and refused.get_json()["error"]["details"]["field"] == "metadata.owner"


def test_a_strict_number_is_still_accepted(root):
    client, headers = root
    resp = client.put("/v1/secrets/a/strict", json={"data": {"k": "v"}, "options": {"cas": 0}}, headers=headers)
    assert resp.status_code == 201
    again = client.put("/v1/secrets/a/strict", json={"data": {"k": "v"}, "options": {"cas": 0}}, headers=headers)
    assert again.get_json()["error"]["code"] == "version_conflict"


def test_a_webhook_signature_timestamp_in_unicode_digits_is_invalid_signature(root):
    client, _ = root
    resp = client.post("/v1/identity/webhooks/scaikey", data=b"{}",
                       headers={"X-ScaiKey-Signature": "t=\u00b2,v1=00", "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize("url", ["/v1/secrets//a", "/v1//secrets/a/b", "//v1/health", "/v1/secrets/a//b"])
def test_a_double_slash_gets_the_json_envelope_not_an_html_redirect(root, url):
    client, headers = root
    resp = client.get(url, headers=headers)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.data[:200])
    assert resp.mimetype == "application/json" and resp.get_json()["error"]["code"]
    assert "Location" not in resp.headers


def test_a_database_url_port_in_unicode_digits_is_a_configuration_error(base_env):
    """str.isdigit() accepts '²', which int() refuses: the variable is named instead of a traceback."""
    with pytest.raises(ConfigError) as exc:
        load_settings({**base_env, "DATABASE_URL": "postgresql://u@h/db?port=\u00b2"})
    assert exc.value.variable == "DATABASE_URL"


# ------------------------------------------------------------------ F14
def test_a_replayed_body_with_a_fresh_unsigned_event_id_header_is_not_a_new_event(root, scaikey, make_app):
    """F14: a body without event_id/event_type used to take them from unsigned headers, so a captured
    delivery replayed with a new X-ScaiKey-Event-ID passed the dedup. Only signed fields count now."""
    client, _ = root
    body = json.dumps({"data": {"id": "usr_f14_" + secrets.token_hex(3), "email": "f14@x.example"},
                       "resource": {"type": "user"}}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-ScaiKey-Signature": scaikey.sign(body),
               "X-ScaiKey-Event-ID": "evt_attacker_" + secrets.token_hex(4), "X-ScaiKey-Event-Type": "user.created"}
    resp = client.post("/v1/identity/webhooks/scaikey", data=body, headers=headers)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_request"
    assert "signed" in resp.get_json()["error"]["message"]


def test_signed_event_fields_win_over_headers_that_disagree(root, scaikey):
    client, _ = root
    body, headers = scaikey.build_webhook("user.created", {"id": "usr_f14b_" + secrets.token_hex(3),
                                                           "email": "f14b@x.example"})
    signed_id = json.loads(body)["event_id"]
    headers["X-ScaiKey-Event-ID"] = "evt_other"
    first = client.post("/v1/identity/webhooks/scaikey", data=body, headers=headers)
    assert first.get_json() == {"event_id": signed_id, "status": "applied"}
    headers["X-ScaiKey-Event-ID"] = "evt_other_again"
    replay = client.post("/v1/identity/webhooks/scaikey", data=body, headers=headers)
    assert replay.get_json() == {"event_id": signed_id, "status": "duplicate"}


# ------------------------------------------------------------------ F5 at the API
PATHOLOGICAL = "*a*a*a*a*a*a*a*a*a*a*a*a*b"


def test_a_pattern_over_the_wildcard_limit_is_refused_naming_the_rule(root):
    client, headers = root
    resp = client.post("/v1/policies", headers=headers, json={"name": "wild", "rules": [
        {"path_pattern": "a/*", "permissions": ["read"]},
        {"path_pattern": "*a" * 17, "permissions": ["read"]}]})
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "validation_error" and error["details"]["rule_index"] == 1
    assert "rules.1.path_pattern" in error["details"]["fields"]


def test_the_reviews_pathological_rule_does_not_stall_a_read(root, scaikey):
    """Invariant 12: a tenant's own policy author binds the review's rule to a user; that user's reads
    of 30- and 200-character paths are decided in milliseconds (they took 5 s and > 60 s before)."""
    import time

    client, headers = root
    tenant = "tnt_in_p_" + secrets.token_hex(3)
    admin_token = scaikey.mint(sub="usr_pa_" + secrets.token_hex(3), email=f"adm@{tenant}.example", tenant_id=tenant,
                               partner_id="ptn_in", scopes=ALL_SCOPES, role="tenant_admin")
    admin = {"Authorization": f"Bearer {admin_token}"}
    pid = client.post("/v1/policies", headers=admin, json={"name": "slow", "rules": [
        {"path_pattern": PATHOLOGICAL, "permissions": ["read", "list"]}]}).get_json()["id"]
    email = f"u@{tenant}.example"
    bound = client.post(f"/v1/policies/{pid}/bindings", headers=admin,
                        json={"identity_type": "user", "identity_id": f"user:{email}"})
    assert bound.status_code == 201, bound.get_json()
    user = {"Authorization": "Bearer " + scaikey.mint(sub="usr_pu_" + secrets.token_hex(3), email=email,
                                                      tenant_id=tenant, partner_id="ptn_in",
                                                      scopes=("secrets:read", "secrets:list"))}
    for length in (30, 200):
        path = "a" * length
        started = time.perf_counter()
        resp = client.get(f"/v1/secrets/{path}", headers=user)
        elapsed = time.perf_counter() - started
        assert resp.get_json()["error"]["code"] in ("access_denied", "secret_not_found"), resp.get_json()
        assert elapsed < 0.5, (length, elapsed)
