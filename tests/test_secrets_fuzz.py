"""Bad input never yields a 500: random JSON bodies and query strings against the secrets and policies API."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
bodies = st.dictionaries(st.sampled_from(["data", "secret_type", "metadata", "options", "paths", "name", "rules",
                                          "versions", "identity_id", "identity_type", "path", "permission",
                                          "context", "expires_at", "scope", "groups"]) | st.text(max_size=8),
                         json_values, max_size=5)


@pytest.fixture(scope="module")
def admin(make_app, scaikey):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    caller = Callers(scaikey, app.test_client()).admin(new_tenant())
    caller.put("/v1/secrets/fuzz/a", json={"data": {"k": "v"}})
    pid = caller.post("/v1/policies", json={"name": "fuzz", "rules": [{"path_pattern": "a", "permissions": ["read"]}]})
    caller.policy_id = pid.get_json()["id"]
    return caller


ENDPOINTS = [("PUT", "/v1/secrets/fuzz/a"), ("PATCH", "/v1/secrets/fuzz/a:metadata"), ("POST", "/v1/secrets/batch"),
             ("POST", "/v1/secrets/batch/metadata"), ("POST", "/v1/secrets/fuzz/a:destroy"), ("POST", "/v1/policies"),
             ("POST", "/v1/policies/test"), ("POST", "/v1/policies/{pid}/bindings"), ("PATCH", "/v1/policies/{pid}")]


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_random_bodies_get_an_envelope_never_a_500(admin, endpoint, body):
    method, url = endpoint
    resp = admin.call(method, url.format(pid=admin.policy_id), json=body)
    assert resp.status_code < 500, (method, url, body, resp.get_json())
    if resp.status_code >= 400:
        assert resp.get_json()["error"]["code"]


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(["prefix", "limit", "cursor", "delimiter", "tag", "owner", "q",
                                               "include_deleted", "version"]), st.text(max_size=30), max_size=4))
def test_random_query_strings_get_an_envelope_never_a_500(admin, params):
    for url in ("/v1/secrets", "/v1/secrets/fuzz/a", "/v1/policies"):
        resp = admin.get(url, query_string=params)
        assert resp.status_code < 500, (url, params, resp.get_json())


@pytest.mark.parametrize("method,url,body", [
    ("PUT", "/v1/secrets/fuzz/nul", {"data": {"k": "v"}, "metadata": {"description": "a\u0000b"}}),
    ("PUT", "/v1/secrets/fuzz/nul", {"data": {"k": "v"}, "options": {"rotation_policy_id": "rot\u0000"}}),
    ("POST", "/v1/policies", {"name": "n\u0000", "rules": [{"path_pattern": "a", "permissions": ["read"]}]}),
    ("POST", "/v1/policies/test", {"identity_id": "user:\u0000", "path": "a", "permission": "read"}),
])
def test_nul_characters_are_rejected_as_bad_input(admin, method, url, body):
    resp = admin.call(method, url, json=body)
    assert 400 <= resp.status_code < 500, resp.get_json()
