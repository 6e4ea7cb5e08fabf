"""Audit of the secret and policy endpoints end to end: entries, fail-closed reads, limits."""
from __future__ import annotations

import secrets as pyrandom

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant
from tests.test_audit_writer import no_audit_insert_url  # noqa: F401  (fixture)

SECRET_VALUE = "s3cr3t-" + pyrandom.token_hex(8)


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


@pytest.fixture
def admin(callers, tenant):
    caller = callers.admin(tenant)
    caller.token = callers.scaikey.mint(sub="usr_" + pyrandom.token_hex(4), email=caller.identity_id[5:],
                                        tenant_id=tenant, partner_id="ptn_test", role="tenant_admin",
                                        scopes=("secrets:read", "secrets:write", "secrets:delete", "secrets:list",
                                                "policies:read", "policies:write", "audit:read", "audit:export"))
    return caller


def entries(admin, request_id):
    body = admin.get("/v1/audit/logs", query_string={"request_id": request_id}).get_json()
    return body["logs"]


def test_a_write_and_a_read_each_leave_one_entry_with_every_field_and_no_value(admin, tenant):
    write = admin.put("/v1/secrets/db/prod/password", json={"data": {"password": SECRET_VALUE}},
                      headers={"X-Request-ID": "req-w-" + tenant, "User-Agent": "scaivault-python/1.0.0"})
    assert write.status_code in (200, 201)
    read = admin.get("/v1/secrets/db/prod/password", headers={"X-Request-ID": "req-r-" + tenant})
    assert read.status_code == 200 and read.get_json()["data"]["password"] == SECRET_VALUE
    [write_entry] = entries(admin, write.headers["X-Request-ID"])
    [read_entry] = entries(admin, read.headers["X-Request-ID"])
    assert write_entry["extra_data"]["client_request_id"] == "req-w-" + tenant
    assert write_entry["action"] == "write" and read_entry["action"] == "read"
    for e in (write_entry, read_entry):
        assert e["success"] is True and e["tenant_id"] == tenant
        assert e["identity_type"] == "user" and e["identity_id"] == admin.identity_id
        assert e["secret_path"] == "db/prod/password" and e["source_ip"] == "127.0.0.1"
        assert isinstance(e["duration_ms"], int) and e["id"].startswith("log_")
    assert write_entry["user_agent"] == "scaivault-python/1.0.0"
    assert read_entry["extra_data"]["version"] == 1
    everything = admin.get("/v1/audit/logs", query_string={"limit": 1000}).get_data(as_text=True)
    assert SECRET_VALUE not in everything


def test_a_denied_read_leaves_one_failed_entry(admin, callers, tenant):
    admin.put("/v1/secrets/app/key", json={"data": {"k": SECRET_VALUE}})
    stranger = callers.user("stranger@x.example", tenant)
    refused = stranger.get("/v1/secrets/app/key", headers={"X-Request-ID": "req-d-" + tenant})
    assert refused.status_code == 403
    [entry] = entries(admin, refused.headers["X-Request-ID"])
    assert entry["action"] == "read" and entry["success"] is False
    assert entry["identity_id"] == "user:stranger@x.example" and entry["secret_path"] == "app/key"
    assert entry["extra_data"]["error"] == "access_denied"


def test_a_policy_change_is_audited(admin, tenant):
    created = admin.post("/v1/policies", json={"name": "readers", "rules": [
        {"path_pattern": "app/*", "permissions": ["read"]}]}, headers={"X-Request-ID": "req-p-" + tenant})
    assert created.status_code == 201, created.get_json()
    [entry] = entries(admin, created.headers["X-Request-ID"])
    assert entry["action"] == "policy_create" and entry["success"] is True
    assert entry["extra_data"]["policy_id"] == created.get_json()["id"]


def test_the_chain_over_real_traffic_verifies_until_a_row_is_edited(app, admin, tenant):
    admin.put("/v1/secrets/chain/a", json={"data": {"v": "1"}})
    for _ in range(3):
        admin.get("/v1/secrets/chain/a")
    assert admin.get("/v1/audit/verify").get_json()["valid"] is True
    app.extensions["scaivault"].db.execute(
        "UPDATE audit_log SET identity_id = 'user:someone-else' WHERE tenant_id = :t AND action = 'read' "
        "AND id = (SELECT min(id) FROM audit_log WHERE tenant_id = :t AND action = 'read')", t=tenant)
    report = admin.get("/v1/audit/verify").get_json()
    assert report["valid"] is False and "modified" in report["first_break"]["problem"]


def test_a_secret_read_returns_503_and_no_data_when_the_audit_insert_fails(
        make_app, scaikey, admin, tenant, no_audit_insert_url):  # noqa: F811
    assert admin.put("/v1/secrets/fail/closed", json={"data": {"password": SECRET_VALUE}}).status_code in (200, 201)
    broken = make_app(DATABASE_URL=no_audit_insert_url, RATE_LIMITS=HIGH_RATE_LIMITS).test_client()
    headers = {"Authorization": f"Bearer {admin.token}"}
    response = broken.get("/v1/secrets/fail/closed", headers=headers)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "audit_unavailable"
    assert SECRET_VALUE not in response.get_data(as_text=True)
    # a write fails too, and leaves nothing behind
    response = broken.put("/v1/secrets/fail/new", json={"data": {"k": "v"}}, headers=headers)
    assert response.status_code == 503
    assert admin.get("/v1/secrets/fail/new").status_code == 404


def test_a_secrets_read_limit_of_5_per_minute_is_shared_by_two_instances(make_app, scaikey, auth, tenant):
    limits = HIGH_RATE_LIMITS.replace("secrets:read: {rate: 100000, window: 1m}", "secrets:read: {rate: 5, window: 1m}")
    assert "secrets:read: {rate: 5, window: 1m}" in limits
    first, second = make_app(RATE_LIMITS=limits).test_client(), make_app(RATE_LIMITS=limits).test_client()
    token = scaikey.mint(sub="usr_rl_" + tenant, email=f"rl@{tenant}.example", tenant_id=tenant, partner_id="ptn_test",
                         role="tenant_admin", scopes=("secrets:read", "secrets:write"))
    assert first.put("/v1/secrets/rl/a", json={"data": {"k": "v"}}, headers=auth(token)).status_code in (200, 201)
    statuses, last = [], None
    for i in range(6):
        last = (first if i % 2 else second).get("/v1/secrets/rl/a", headers=auth(token))
        statuses.append(last.status_code)
        if i < 5:
            assert last.headers["X-RateLimit-Limit"] == "5"
            assert last.headers["X-RateLimit-Remaining"] == str(4 - i)
    assert statuses == [200] * 5 + [429]
    assert last.get_json()["error"]["code"] == "rate_limited"
    assert int(last.headers["Retry-After"]) >= 1 and "X-RateLimit-Reset" in last.headers
    # writes are another category with their own bucket
    assert first.put("/v1/secrets/rl/b", json={"data": {"k": "v"}}, headers=auth(token)).status_code in (200, 201)


def test_a_refused_policy_change_is_audited_with_its_action(admin, callers, tenant):
    outsider = callers.user("outsider@x.example", tenant, scopes=("policies:write", "policies:read"))
    refused = outsider.post("/v1/policies", json={"name": "mine", "rules": [
        {"path_pattern": "**", "permissions": ["read"]}]}, headers={"X-Request-ID": "req-pd-" + tenant})
    assert refused.status_code == 403
    [entry] = entries(admin, refused.headers["X-Request-ID"])
    assert entry["action"] == "policy_create" and entry["success"] is False
    assert entry["identity_id"] == "user:outsider@x.example"


def test_a_flood_of_rate_limited_requests_writes_one_audit_entry_a_minute_not_one_each(make_app, scaikey, auth,
                                                                                       tenant):
    limits = HIGH_RATE_LIMITS.replace("secrets:read: {rate: 100000, window: 1m}", "secrets:read: {rate: 1, window: 1m}")
    app = make_app(RATE_LIMITS=limits)
    client = app.test_client()
    token = scaikey.mint(sub="usr_flood_" + tenant, email=f"flood@{tenant}.example", tenant_id=tenant,
                         partner_id="ptn_test", role="tenant_admin", scopes=("secrets:read",))
    statuses = [client.get("/v1/secrets/flood/a", headers=auth(token)).status_code for _ in range(20)]
    assert statuses.count(429) == 19
    refused = app.extensions["scaivault"].db.scalar(
        "SELECT count(*) FROM audit_log WHERE tenant_id = :t AND extra_data->>'error' = 'rate_limited'", t=tenant)
    assert refused == 1
