"""Dynamic-credential lease events (lease.created, lease.renewed, lease.revoked) on a real PostgreSQL target."""
from __future__ import annotations

import pytest

from tests.dynamic_support import PG_CREATION, PG_REVOCATION, PostgresTarget, TenantEnv
from tests.lifecycle_support import events_of

SCOPES = ("admin", "secrets:read", "secrets:write", "secrets:list", "dynamic:read", "dynamic:manage")


@pytest.fixture(scope="module")
def pg_target():
    target = PostgresTarget()
    target.issued = []
    yield target
    target.drop(target.issued)


@pytest.fixture(scope="module")
def env(make_app, scaikey):
    return TenantEnv(make_app(), scaikey, SCOPES)


def test_a_lease_emits_created_renewed_and_revoked_without_credentials(env, pg_target):
    admin = env.admin
    assert admin.put("/v1/secrets/infra/pg/root", json={"data": {"username": pg_target.root_user,
                                                                 "password": pg_target.root_password}}).status_code == 201
    resp = admin.post("/v1/dynamic/engines", json={"name": "pg", "type": "database", "config": {
        "plugin": "postgresql", "connection_url": pg_target.connection_url, "root_credentials_path": "infra/pg/root"}})
    assert resp.status_code == 201, resp.get_json()
    assert admin.put("/v1/dynamic/engines/pg/roles/ro", json={"creation_statements": PG_CREATION,
                                                              "revocation_statements": PG_REVOCATION}).status_code == 201
    creds = admin.post("/v1/dynamic/engines/pg/creds/ro").get_json()
    pg_target.issued.append(creds["data"]["username"])
    assert admin.post(f"/v1/leases/{creds['lease_id']}/renew", json={"increment": "30m"}).status_code == 200
    assert admin.post(f"/v1/leases/{creds['lease_id']}/revoke").status_code == 200
    got = [e for e in events_of(env.runtime.db, env.tenant) if e["event_type"].startswith("lease.")]
    assert [e["event_type"] for e in got] == ["lease.created", "lease.renewed", "lease.revoked"]
    assert all(e["data"]["lease_id"] == creds["lease_id"] and e["path"] == "dynamic/pg/ro" for e in got)
    text = str(got)
    assert creds["data"]["password"] not in text and creds["data"]["username"] not in text
