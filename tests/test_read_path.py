"""The secret read path's cost rules: one database statement per read (the audit entry rides
along and is committed with it), and one rate-limit check per request."""
from __future__ import annotations

import pytest

from scaivault.audit.chain import verify_chain

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(app, scaikey, tenant):
    return Callers(scaikey, app.test_client()).admin(tenant)


def read_entries(app, tenant, path):
    return app.extensions["scaivault"].db.query(
        "SELECT success, extra_data FROM audit_log WHERE tenant_id = :t AND action = 'read' AND secret_path = :p "
        "ORDER BY ts", t=tenant, p=path)


class StatementCounter:
    def __init__(self, monkeypatch):
        import pg8000.core

        self.count = 0
        original = pg8000.core.CoreConnection.handle_messages

        def counting(conn, *args, **kwargs):
            self.count += 1
            return original(conn, *args, **kwargs)

        monkeypatch.setattr(pg8000.core.CoreConnection, "handle_messages", counting)


def test_a_read_is_one_statement_and_its_entry_names_the_version(app, admin, tenant, monkeypatch):
    for value in ("one", "two"):
        assert admin.put("/v1/secrets/rp/a", json={"data": {"v": value}}).status_code in (200, 201)
    admin.get("/v1/secrets/rp/a")          # warm: statements prepared, keys cached
    counter = StatementCounter(monkeypatch)
    assert admin.get("/v1/secrets/rp/a").get_json()["data"] == {"v": "two"}
    assert counter.count == 1
    assert admin.get("/v1/secrets/rp/a?version=1").get_json()["data"] == {"v": "one"}
    monkeypatch.undo()
    entries = read_entries(app, tenant, "rp/a")
    assert [(e["success"], e["extra_data"]["version"]) for e in entries] == [(True, 2), (True, 2), (True, 1)]
    assert verify_chain(app.extensions["scaivault"].db, tenant).valid


@pytest.mark.parametrize("setup, query, code", [
    (None, "", "secret_not_found"),
    ("destroy", "?version=1", "version_destroyed"),
    (None, "?version=9", "version_not_found"),
])
def test_a_failed_read_leaves_exactly_one_failed_entry(app, admin, tenant, setup, query, code):
    path = f"rp/fail-{code}"
    if code != "secret_not_found":
        assert admin.put(f"/v1/secrets/{path}", json={"data": {"v": "x"}}).status_code == 201
    if setup == "destroy":
        assert admin.put(f"/v1/secrets/{path}", json={"data": {"v": "y"}}).status_code == 200
        assert admin.post(f"/v1/secrets/{path}:destroy", json={"versions": [1]}).status_code == 200
    response = admin.get(f"/v1/secrets/{path}{query}")
    assert response.get_json()["error"]["code"] == code
    [entry] = read_entries(app, tenant, path)
    assert entry["success"] is False and entry["extra_data"]["error"] == code
    assert verify_chain(app.extensions["scaivault"].db, tenant).valid


def test_flask_limiter_adds_no_check_of_its_own_to_each_request(app):
    limiter = app.extensions["scaivault_rate_limits"].limiter
    hooks = [h for funcs in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
             for h in funcs.get(None, [])]
    owners = [getattr(h, "__self__", None) or (getattr(h, "args", None) or [None])[0] for h in hooks]
    assert limiter not in owners


def test_a_user_agent_quoting_the_version_placeholder_still_chains(app, admin, tenant):
    from scaivault.audit.writer import _FILL_MARK

    assert admin.put("/v1/secrets/rp/ua", json={"data": {"v": "x"}}).status_code == 201
    agent = f'x"version":{_FILL_MARK} {_FILL_MARK}'
    assert admin.get("/v1/secrets/rp/ua", headers={"User-Agent": agent}).status_code == 200
    [entry] = read_entries(app, tenant, "rp/ua")
    assert entry["extra_data"]["version"] == 1
    assert verify_chain(app.extensions["scaivault"].db, tenant).valid
