"""Dynamic credentials through the clients, against a real `scaivault serve` and a real PostgreSQL
target: the SDK's dynamic and leases namespaces (sync and async), the `scaivault dynamic` group in
human and --json forms, and the MCP tools with read-only and masking."""
from __future__ import annotations

import pytest

from scaivault_mcp.controls import MASK
from scaivault_sdk import NotFoundError, SyncScaiVaultClient
from tests.clients_support import Both, admin_token, new_tenant, ok, run, run_mcp, vault  # noqa: F401
from tests.dynamic_support import PG_CREATION, PG_REVOCATION, PostgresTarget

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def target():
    pg = PostgresTarget()
    pg.issued = []
    yield pg
    pg.drop(pg.issued)


@pytest.fixture(scope="module")
def setup(vault, scaikey, target):
    """A tenant whose admin has an engine `pg` on the target database and a role `readonly`."""
    tenant = new_tenant()
    token = admin_token(scaikey, tenant)
    with SyncScaiVaultClient(vault.url, token) as client:
        client.secrets.write("infra/pg/root", {"username": target.root_user, "password": target.root_password},
                             secret_type="json")
        engine = client.dynamic.create_engine("pg", plugin="postgresql", connection_url=target.connection_url,
                                              root_credentials_path="infra/pg/root", default_ttl="1h", max_ttl="4h")
        assert engine.health == "healthy" or engine.health
        client.dynamic.put_role("pg", "readonly", PG_CREATION, revocation_statements=PG_REVOCATION)
    return tenant, token


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_sdk_generates_lists_renews_and_revokes(kind, vault, setup, target):
    tenant, token = setup
    c = Both(kind, vault.url, token)
    try:
        assert [e.name for e in c.run(lambda v: v.dynamic.list_engines())] == ["pg"]
        assert c.run(lambda v: v.dynamic.get_engine("pg")).config["root_credentials_path"] == "infra/pg/root"
        assert [r.name for r in c.run(lambda v: v.dynamic.list_roles("pg"))] == ["readonly"]
        assert c.run(lambda v: v.dynamic.get_role("pg", "readonly")).creation_statements == PG_CREATION
        assert c.run(lambda v: v.dynamic.engine_health("pg"))
        creds = c.run(lambda v: v.dynamic.generate("pg", "readonly", ttl="10m"))
        target.issued.append(creds.data["username"])
        assert creds.lease_id.startswith("pg/readonly/") and 0 < creds.lease_duration <= 600
        assert target.login_works(creds.data["username"], creds.data["password"])
        listed = c.run(lambda v: v.leases.list(engine="pg", state="active"))
        assert creds.lease_id in [x.lease_id for x in listed]
        lease = c.run(lambda v: v.leases.get(creds.lease_id))
        assert lease.username == creds.data["username"] and "password" not in lease.model_dump()
        renewed = c.run(lambda v: v.leases.renew(creds.lease_id, increment="30m"))
        assert renewed.expires_at > lease.expires_at
        assert c.run(lambda v: v.leases.revoke(creds.lease_id)).state == "revoked"
        assert not target.role_exists(creds.data["username"])
        with pytest.raises(NotFoundError):
            c.run(lambda v: v.dynamic.generate("pg", "no-such-role"))
    finally:
        c.close()


def test_the_dynamic_command_group_in_human_and_json_forms(vault, setup, target, tmp_path):
    tenant, token = setup
    env = {"HOME": str(tmp_path), "SCAIVAULT_URL": vault.url, "SCAIVAULT_TOKEN": token}
    creds = ok(["dynamic", "creds", "pg", "readonly", "--ttl", "15m", "--json"], env).json()
    target.issued.append(creds["data"]["username"])
    assert target.login_works(creds["data"]["username"], creds["data"]["password"])
    human = ok(["dynamic", "creds", "pg", "readonly"], env).out
    lease_line = next(line for line in human.splitlines() if line.startswith("lease_id"))
    second = lease_line.split()[1]
    user = next(line.split()[1] for line in human.splitlines() if line.startswith("username"))
    target.issued.append(user)
    assert any(line.startswith("password") for line in human.splitlines())
    listed = ok(["dynamic", "leases", "list", "--engine", "pg", "--state", "active", "--json"], env).json()["leases"]
    assert {creds["lease_id"], second} <= {x["lease_id"] for x in listed}
    assert second in ok(["dynamic", "leases", "list"], env).out
    assert ok(["dynamic", "leases", "get", second, "--json"], env).json()["username"] == user
    assert user in ok(["dynamic", "leases", "get", second], env).out
    assert ok(["dynamic", "leases", "renew", second, "--increment", "20m", "--json"], env).json()["state"] == "active"
    assert "renewed" in ok(["dynamic", "leases", "renew", second], env).out
    assert ok(["dynamic", "leases", "revoke", creds["lease_id"], "--json"], env).json()["state"] == "revoked"
    assert ok(["dynamic", "leases", "revoke", second], env).out.startswith("revoked ")
    assert not target.role_exists(user)
    assert "pg" in ok(["dynamic", "engines", "list"], env).out
    assert ok(["dynamic", "engines", "list", "--json"], env).json()["engines"][0]["name"] == "pg"
    assert "postgresql" in ok(["dynamic", "engines", "get", "pg"], env).out
    assert ok(["dynamic", "engines", "get", "pg", "--json"], env).json()["config"]["plugin"] == "postgresql"
    assert ok(["dynamic", "engines", "health", "pg", "--json"], env).json()
    ok(["dynamic", "roles", "put", "pg", "temp", "--creation", PG_CREATION[0], "--revocation", PG_REVOCATION[1],
        "--max-ttl", "1h"], env)
    assert {"readonly", "temp"} <= {r["name"] for r in ok(["dynamic", "roles", "list", "pg", "--json"], env).json()["roles"]}
    assert "temp" in ok(["dynamic", "roles", "list", "pg"], env).out
    assert ok(["dynamic", "roles", "get", "pg", "temp", "--json"], env).json()["max_ttl"] in (3600, "1h")
    assert "deleted role pg/temp" in ok(["dynamic", "roles", "delete", "pg", "temp"], env).out
    assert run(["dynamic", "roles", "get", "pg", "temp"], env).code == 4
    third = ok(["dynamic", "creds", "pg", "readonly", "--json"], env).json()
    target.issued.append(third["data"]["username"])
    assert ok(["dynamic", "leases", "revoke-prefix", "pg/readonly/", "--json"], env).json()
    assert not target.role_exists(third["data"]["username"])


def test_the_mcp_tools_generate_masked_and_refuse_in_read_only(vault, setup, target):
    tenant, token = setup
    tools, results = run_mcp(vault, token, [
        ("scaivault_generate_dynamic_credentials", {"engine": "pg", "role": "readonly", "ttl": "5m"}),
        ("scaivault_list_dynamic_engines", {}),
        ("scaivault_list_dynamic_roles", {"engine": "pg"}),
    ], SCAIVAULT_MASK_VALUES="true")
    (err, creds), (_, engines), (_, roles) = results
    assert err is False and creds["data"]["password"] == MASK and creds["data"]["username"]
    target.issued.append(creds["data"]["username"])
    assert [e["name"] for e in engines["engines"]] == ["pg"] and "readonly" in [r["name"] for r in roles["roles"]]
    _, results = run_mcp(vault, token, [
        ("scaivault_generate_dynamic_credentials", {"engine": "pg", "role": "readonly"}),
        ("scaivault_revoke_lease", {"lease_id": creds["lease_id"]}),
        ("scaivault_list_leases", {"engine": "pg", "state": "active"}),
    ], SCAIVAULT_READ_ONLY="true")
    (gen_err, gen), (rev_err, rev), (_, leases) = results
    assert gen_err and gen["error"]["control"] == "SCAIVAULT_READ_ONLY"
    assert rev_err and rev["error"]["control"] == "SCAIVAULT_READ_ONLY"
    assert creds["lease_id"] in [x["lease_id"] for x in leases["leases"]]       # still live: nothing reached it
    _, results = run_mcp(vault, token, [("scaivault_revoke_lease", {"lease_id": creds["lease_id"]}),
                                        ("scaivault_generate_dynamic_credentials", {"engine": "pg", "role": "readonly"})],
                         SCAIVAULT_ALLOWED_PATHS="apps")
    assert results[0][1]["error"]["control"] == "SCAIVAULT_ALLOWED_PATHS"
    assert results[1][1]["error"]["control"] == "SCAIVAULT_ALLOWED_PATHS"
    with SyncScaiVaultClient(vault.url, token) as client:
        assert client.leases.revoke(creds["lease_id"]).state == "revoked"
