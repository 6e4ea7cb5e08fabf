"""Issue 9 F16: the audit entry's request id is the server's; a client's X-Request-ID is kept apart."""
from __future__ import annotations

import secrets

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS


@pytest.fixture(scope="module")
def tenant_admin(make_app, scaikey):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = "tnt_rid_" + secrets.token_hex(4)
    token = scaikey.mint(sub="usr_rid_" + secrets.token_hex(4), email=f"admin@{tenant}.example", tenant_id=tenant,
                         partner_id="ptn_rid", role="tenant_admin",
                         scopes=("secrets:read", "secrets:write", "audit:read"))
    return app.test_client(), {"Authorization": f"Bearer {token}"}, app.extensions["scaivault"]


def _logs(client, headers, **query):
    return client.get("/v1/audit/logs", query_string=query, headers=headers).get_json()["logs"]


def test_a_client_cannot_choose_the_request_id_of_its_audit_entry(tenant_admin):
    client, headers, runtime = tenant_admin
    first = client.put("/v1/secrets/rid/a", json={"data": {"k": "v"}}, headers=headers)
    victim_id = first.headers["X-Request-ID"]
    # the attacker replays the id of an earlier request (or any id it wants in the log) ...
    forged = client.put("/v1/secrets/rid/a", json={"data": {"k": "w"}}, headers={**headers, "X-Request-ID": victim_id})
    assert forged.status_code == 200
    # ... and gets an id of the server's making; the audit log still holds one entry per request id
    assert forged.headers["X-Request-ID"] != victim_id and forged.headers["X-Request-ID"].startswith("req_")
    assert forged.headers["X-Client-Request-ID"] == victim_id
    assert runtime.db.scalar("SELECT count(*) FROM audit_log WHERE request_id = :r", r=victim_id) == 1
    [entry] = _logs(client, headers, request_id=forged.headers["X-Request-ID"])
    assert entry["action"] == "write" and entry["request_id"] == forged.headers["X-Request-ID"]
    assert entry["extra_data"]["client_request_id"] == victim_id


def test_a_malformed_or_overlong_client_request_id_is_dropped(tenant_admin):
    client, headers, runtime = tenant_admin
    for bad in ("x" * 129, "has space", "a\tb", "<script>"):
        resp = client.get("/v1/secrets/rid/a", headers={**headers, "X-Request-ID": bad})
        assert resp.status_code == 200 and "X-Client-Request-ID" not in resp.headers
        row = runtime.db.one("SELECT request_id, extra_data FROM audit_log WHERE request_id = :r",
                             r=resp.headers["X-Request-ID"])
        assert "client_request_id" not in row["extra_data"]


def test_the_error_envelope_names_the_servers_request_id(tenant_admin):
    client, headers, _ = tenant_admin
    resp = client.get("/v1/secrets/rid/missing", headers={**headers, "X-Request-ID": "mine-1"})
    assert resp.status_code == 404
    assert resp.get_json()["error"]["request_id"] == resp.headers["X-Request-ID"] != "mine-1"
