"""Issue 16 item 4: one pagination (limit, signed cursor, has_more, envelope key) and one timestamp format."""
from __future__ import annotations

import re

import pytest

from scaivault import pagination
from tests.secrets_support import ADMIN_SCOPES, HIGH_RATE_LIMITS, Callers, error_code, new_tenant

RFC3339_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(callers, tenant, scaikey, app):
    token = scaikey.mint(sub="usr_pg_" + tenant, email=f"admin@{tenant}.example", tenant_id=tenant,
                         partner_id="ptn_test", scopes=ADMIN_SCOPES + ("audit:read", "audit:export", "pki:admin", "dynamic:read", "admin",
                                                       "subscriptions:read"),
                         role="tenant_admin")
    from tests.secrets_support import Caller
    return Caller(app.test_client(), token, f"user:admin@{tenant}.example")


def _walk(caller, url: str, key: str, limit: int = 2) -> list:
    seen, cursor, pages = [], None, 0
    while True:
        sep = "&" if "?" in url else "?"
        resp = caller.get(f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        assert set(body) >= {key, "cursor", "has_more"}, body.keys()
        assert len(body[key]) <= limit
        seen += body[key]
        pages += 1
        if not body["has_more"]:
            assert body["cursor"] is None
            return seen
        cursor = body["cursor"]
        assert pages < 50


def _tamper(cursor: str) -> str:
    body, mac = cursor.split(".")
    return body + "." + ("A" if mac[0] != "A" else "B") + mac[1:]


def test_every_list_pages_with_the_same_envelope(admin):
    for i in range(5):
        assert admin.put(f"/v1/secrets/pg/s{i}", json={"data": {"i": i}}).status_code == 201
    policy_ids = []
    for i in range(5):
        resp = admin.post("/v1/policies", json={"name": f"pg-{i}", "rules": [{"path_pattern": "pg/*",
                                                                           "permissions": ["read"]}]})
        policy_ids.append(resp.get_json()["id"])
    for i in range(5):
        assert admin.post(f"/v1/policies/{policy_ids[0]}/bindings", json={
            "identity_type": "user", "identity_id": f"user:u{i}@example.com"}).status_code == 201
    assert len(_walk(admin, "/v1/secrets?prefix=pg/", "secrets")) == 5
    assert len({p["id"] for p in _walk(admin, "/v1/policies", "policies")}) == 5
    assert len({b["id"] for b in _walk(admin, f"/v1/policies/{policy_ids[0]}/bindings", "bindings")}) == 5
    assert len(_walk(admin, "/v1/audit/logs", "logs")) >= 10
    for _ in range(3):
        assert admin.post("/v1/audit/export", json={"format": "jsonl"}).status_code == 202
    assert len({e["export_id"] for e in _walk(admin, "/v1/audit/exports", "exports")}) == 3


@pytest.mark.parametrize("url", ["/v1/secrets", "/v1/policies", "/v1/audit/logs", "/v1/audit/exports",
                                 "/v1/auth/tokens", "/v1/pki/ca", "/v1/dynamic/engines", "/v1/webhooks",
                                 "/v1/rotation/policies", "/v1/secret-policies", "/v1/subscriptions"])
@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1"])
def test_a_bad_limit_is_one_error_everywhere(admin, url, limit):
    resp = admin.get(f"{url}?limit={limit}")
    assert resp.status_code == 400 and error_code(resp) == "invalid_request", (url, resp.get_json())


def test_limit_defaults_to_100_and_allows_1000(admin):
    for i in range(101):
        admin.put(f"/v1/secrets/many/s{i:03d}", json={"data": {"i": i}})
    body = admin.get("/v1/secrets?prefix=many/").get_json()
    assert len(body["secrets"]) == 100 and body["has_more"] is True
    assert len(admin.get("/v1/secrets?prefix=many/&limit=1000").get_json()["secrets"]) == 101


def test_tampered_or_foreign_cursors_answer_invalid_cursor(admin):
    for i in range(3):
        admin.put(f"/v1/secrets/tc/s{i}", json={"data": {"i": i}})
    cursor = admin.get("/v1/secrets?prefix=tc/&limit=1").get_json()["cursor"]
    logs_cursor = admin.get("/v1/audit/logs?limit=1").get_json()["cursor"]
    for url in (f"/v1/secrets?prefix=tc/&limit=1&cursor={_tamper(cursor)}",
                "/v1/secrets?cursor=eyJhZnRlciI6ICJ0Yy9zMiJ9",          # the old unsigned form
                f"/v1/audit/logs?cursor={_tamper(logs_cursor)}",
                f"/v1/audit/logs?cursor={cursor}",                       # a cursor of another listing
                f"/v1/policies?cursor={logs_cursor}",
                "/v1/audit/exports?cursor=x.y", "/v1/auth/tokens?cursor=abc.def"):
        resp = admin.get(url)
        assert resp.status_code == 400 and error_code(resp) == "invalid_cursor", (url, resp.get_json())


def test_cursors_survive_a_restart_and_are_shared_by_instances(admin, make_app, app):
    for i in range(3):
        admin.put(f"/v1/secrets/rs/s{i}", json={"data": {"i": i}})
    first = admin.get("/v1/secrets?prefix=rs/&limit=1").get_json()
    other = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)          # another instance (a restart) on the same database
    resp = other.test_client().get(f"/v1/secrets?prefix=rs/&limit=1&cursor={first['cursor']}",
                                   headers={"Authorization": f"Bearer {admin.token}"})
    assert resp.status_code == 200 and resp.get_json()["secrets"][0]["path"] == "rs/s1"
    # the key is sealed material: a wrapped partner key row, never plaintext
    row = app.extensions["scaivault"].db.one("SELECT wrapped FROM partner_keys WHERE partner_id = :p",
                                              p=pagination.SYSTEM_KEY_OWNER)
    assert row is not None and len(bytes(row["wrapped"])) > 32


def test_one_timestamp_format(admin):
    written = admin.put("/v1/secrets/ts/a", json={"data": {"k": "v"}}).get_json()
    policy = admin.post("/v1/policies", json={"name": "ts", "rules": [{"path_pattern": "ts/*",
                                                                       "permissions": ["read"]}]}).get_json()
    binding = admin.post(f"/v1/policies/{policy['id']}/bindings", json={
        "identity_type": "user", "identity_id": "user:x@example.com"}).get_json()
    log = admin.get("/v1/audit/logs?limit=1").get_json()["logs"][0]
    stamps = [written["created_at"], policy["created_at"], policy["updated_at"], binding["created_at"],
              log["timestamp"], admin.get("/v1/health").get_json().get("timestamp") or log["timestamp"]]
    for stamp in stamps:
        assert RFC3339_MICRO.match(stamp), stamp


def test_the_module_formats_and_rejects():
    from datetime import datetime, timezone
    assert pagination.timestamp(datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)) == "2026-12-01T10:00:00.000000Z"
    with pytest.raises(Exception) as exc:
        pagination.page_limit("1001")
    assert exc.value.code == "invalid_request"
