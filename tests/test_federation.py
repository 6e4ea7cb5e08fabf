"""Federation (spec/50 section 3) against a real OpenBao dev server (KV v2) and moto's Secrets Manager.

The done-when of issue 14: a secret written in OpenBao reads through ScaiVault in proxy mode and
appears in ScaiVault after a sync; a change in ScaiVault reaches moto's Secrets Manager in export
sync; OpenBao down gives 503 in proxy mode and the last synced value in sync mode, never 500.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.fakes.servers import OPENBAO_ROOT_TOKEN, MotoServer, start_openbao
from tests.secrets_support import ADMIN_SCOPES, HIGH_RATE_LIMITS, Callers, error_code, new_tenant

pytestmark = pytest.mark.slow
FED_SCOPES = ADMIN_SCOPES + ("federation:read", "federation:write", "audit:read", "admin")


@pytest.fixture(scope="module")
def bao(tmp_path_factory):
    server = start_openbao(tmp_path_factory.mktemp("bao-fed"))
    yield server
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture(scope="module")
def moto():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(app, scaikey, tenant):
    callers = Callers(scaikey, app.test_client())
    return callers.user(f"fed-admin@{tenant}.example", tenant, scopes=FED_SCOPES, role="tenant_admin")


def vault_backend(admin, bao, mode="proxy", name="vault", **config):
    admin.put("/v1/secrets/infra/vault/token", json={"data": {"token": OPENBAO_ROOT_TOKEN}})
    body = {"name": name, "type": "hashicorp-vault", "mode": mode,
            "config": {"endpoint": bao.url, "auth_method": "token", "auth_config_path": "infra/vault/token",
                       "timeout_seconds": 1, **config},
            "path_mapping": {f"external/{name}/**": f"secret/data/{name}/**"}}
    if mode == "sync":
        body["sync_interval"] = "15m"
    return admin.post("/v1/federation/backends", json=body)


def test_a_vault_secret_reads_through_scaivault_in_proxy_mode_live_and_audited(admin, bao):
    bao.client.secrets.kv.v2.create_or_update_secret(path="vault/app/db", secret={"password": "from-vault-1"})
    created = vault_backend(admin, bao)
    assert created.status_code == 201, created.get_json()
    backend = created.get_json()
    assert backend["id"].startswith("fed_") and backend["mode"] == "proxy"
    assert OPENBAO_ROOT_TOKEN not in json.dumps(backend)

    read = admin.get("/v1/secrets/external/vault/app/db")
    assert read.status_code == 200
    body = read.get_json()
    assert body["data"] == {"password": "from-vault-1"}
    assert body["federation"]["backend_id"] == backend["id"] and body["federation"]["mode"] == "proxy"

    # live: a change in Vault shows on the next read; nothing was stored in ScaiVault
    bao.client.secrets.kv.v2.create_or_update_secret(path="vault/app/db", secret={"password": "from-vault-2"})
    assert admin.get("/v1/secrets/external/vault/app/db").get_json()["data"] == {"password": "from-vault-2"}
    stored = admin.client.application.extensions["scaivault"].db.scalar(
        "SELECT count(*) FROM secrets WHERE tenant_id = :t AND path LIKE 'external/%'", t=admin_tenant(admin))
    assert stored == 0

    # audited like any read, naming the backend
    logs = admin.get("/v1/audit/logs?action=read&path_prefix=external/vault/app/db").get_json()["logs"]
    assert logs and logs[0]["extra_data"]["federation"]["backend_id"] == backend["id"]
    assert "from-vault" not in json.dumps(logs)

    # writes to a proxied path are refused; a path Vault lacks is 404
    refused = admin.put("/v1/secrets/external/vault/app/db", json={"data": {"password": "local"}})
    assert refused.status_code == 409 and error_code(refused) == "federated_path_read_only"
    missing = admin.get("/v1/secrets/external/vault/app/none")
    assert missing.status_code == 404 and error_code(missing) == "secret_not_found"
    recipe = admin.post("/v1/secret-policies", json={"name": "fed-recipe", "fields": [
        {"name": "password", "generator": "random", "config": {"length": 20, "charset": "alphanumeric"}}]})
    assert recipe.status_code == 201, recipe.get_json()
    generated = admin.post("/v1/secrets/external/vault/app/db:generate", json={"secret_policy_id": recipe.get_json()["id"]})
    assert generated.status_code == 409 and error_code(generated) == "federated_path_read_only"


def admin_tenant(caller) -> str:
    return caller.identity_id.split("@", 1)[1].removesuffix(".example")


def test_vault_down_is_503_in_proxy_mode_within_the_timeout_and_the_last_synced_value_in_sync_mode(admin, bao):
    bao.client.secrets.kv.v2.create_or_update_secret(path="outage/svc/key", secret={"k": "synced-1"})
    created = vault_backend(admin, bao, name="outage")
    backend_id = created.get_json()["id"]
    admin.put("/v1/secrets/plain/unrelated", json={"data": {"x": "1"}})

    os.killpg(bao.proc.pid, signal.SIGSTOP)         # a stalled Vault: connections hang
    try:
        started = time.monotonic()
        down = admin.get("/v1/secrets/external/outage/svc/key")
        waited = time.monotonic() - started
        assert down.status_code == 503 and error_code(down) == "federation_unavailable"
        assert waited < 5, f"a stalled backend held the read for {waited:.1f} s"
        assert admin.get("/v1/secrets/plain/unrelated").status_code == 200   # other paths unaffected
    finally:
        os.killpg(bao.proc.pid, signal.SIGCONT)

    # proxy -> sync is a PATCH; one sync copies the value in, sealed like any secret
    patched = admin.patch(f"/v1/federation/backends/{backend_id}", json={"mode": "sync", "sync_interval": "15m"})
    assert patched.status_code == 200 and patched.get_json()["mode"] == "sync"
    synced = admin.post(f"/v1/federation/backends/{backend_id}/sync")
    assert synced.status_code == 200 and synced.get_json()["written"] == 1, synced.get_json()
    assert admin.get("/v1/secrets/external/outage/svc/key").get_json()["data"] == {"k": "synced-1"}

    os.killpg(bao.proc.pid, signal.SIGSTOP)
    try:
        local = admin.get("/v1/secrets/external/outage/svc/key")
        assert local.status_code == 200 and local.get_json()["data"] == {"k": "synced-1"}
        failed = admin.post(f"/v1/federation/backends/{backend_id}/sync")
        assert failed.status_code == 200 and failed.get_json()["status"] == "failed"
        status = admin.get(f"/v1/federation/backends/{backend_id}/status").get_json()
        assert status["reachable"] is False and status["status"] == "unreachable"
    finally:
        os.killpg(bao.proc.pid, signal.SIGCONT)

    # a later change in Vault arrives with the next sync; an unchanged rerun writes nothing
    bao.client.secrets.kv.v2.create_or_update_secret(path="outage/svc/key", secret={"k": "synced-2"})
    assert admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()["written"] == 1
    assert admin.get("/v1/secrets/external/outage/svc/key").get_json()["data"] == {"k": "synced-2"}
    again = admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()
    assert again["written"] == 0 and again["unchanged"] == 1
    assert admin.get(f"/v1/federation/backends/{backend_id}/status").get_json()["status"] == "healthy"


def test_a_path_that_differs_locally_before_the_first_sync_is_a_listed_conflict_and_kept(admin, bao):
    bao.client.secrets.kv.v2.create_or_update_secret(path="clash/a", secret={"v": "remote"})
    bao.client.secrets.kv.v2.create_or_update_secret(path="clash/b", secret={"v": "same"})
    admin.put("/v1/secrets/external/clash/a", json={"data": {"v": "local"}})
    admin.put("/v1/secrets/external/clash/b", json={"data": {"v": "same"}})
    backend_id = vault_backend(admin, bao, mode="sync", name="clash").get_json()["id"]
    result = admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()
    assert result["conflicts"] == 1 and result["unchanged"] == 1, result
    conflicts = admin.get(f"/v1/federation/backends/{backend_id}/conflicts").get_json()["conflicts"]
    assert [c["path"] for c in conflicts] == ["external/clash/a"]
    assert admin.get("/v1/secrets/external/clash/a").get_json()["data"] == {"v": "local"}
    # synced paths refuse local writes unless the backend takes writes through
    refused = admin.put("/v1/secrets/external/clash/b", json={"data": {"v": "changed"}})
    assert refused.status_code == 409 and error_code(refused) == "federated_path_read_only"


def test_write_through_reaches_vault_first_and_the_next_sync_sees_no_conflict(admin, bao):
    backend_id = vault_backend(admin, bao, mode="sync", name="wt", write_policy="write_through").get_json()["id"]
    written = admin.put("/v1/secrets/external/wt/app/token", json={"data": {"t": "written-in-scaivault"}})
    assert written.status_code == 201
    remote = bao.client.secrets.kv.v2.read_secret_version(path="wt/app/token", mount_point="secret",
                                                          raise_on_deleted_version=True)
    assert remote["data"]["data"] == {"t": "written-in-scaivault"}
    result = admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()
    assert result["conflicts"] == 0 and result["written"] == 0 and result["unchanged"] == 1, result


def test_creation_tests_the_connection_and_never_echoes_the_credential(admin, bao):
    admin.put("/v1/secrets/infra/vault/bad", json={"data": {"token": "s.wrong-token-value"}})
    bad = admin.post("/v1/federation/backends", json={
        "name": "bad", "type": "hashicorp-vault", "mode": "proxy",
        "config": {"endpoint": bao.url, "auth_method": "token", "auth_config_path": "infra/vault/bad"},
        "path_mapping": {"external/bad/**": "secret/data/bad/**"}})
    assert bad.status_code == 400 and error_code(bad) == "invalid_config"
    assert "wrong-token-value" not in bad.get_data(as_text=True)
    missing = admin.post("/v1/federation/backends", json={
        "name": "nocreds", "type": "hashicorp-vault", "mode": "proxy",
        "config": {"endpoint": bao.url, "auth_method": "approle", "auth_config_path": "infra/vault/absent"},
        "path_mapping": {"external/nocreds/**": "secret/data/x/**"}})
    assert missing.status_code == 400 and error_code(missing) == "invalid_config"
    uneven = admin.post("/v1/federation/backends", json={
        "name": "uneven", "type": "hashicorp-vault", "mode": "proxy", "config": {"endpoint": bao.url},
        "path_mapping": {"external/uneven/**": "secret/data/x"}})
    assert uneven.status_code == 422 and error_code(uneven) == "validation_error"


def test_only_admins_manage_backends_and_a_credential_must_be_readable_by_its_author(app, scaikey, admin, bao, tenant):
    vault_backend(admin, bao, name="guarded")
    callers = Callers(scaikey, app.test_client())
    plain = callers.user(f"dev@{tenant}.example", tenant, scopes=FED_SCOPES)
    listed = plain.get("/v1/federation/backends")
    assert listed.status_code == 403
    other = callers.user("admin@other.example", new_tenant(), scopes=FED_SCOPES, role="tenant_admin")
    backends = admin.get("/v1/federation/backends").get_json()["backends"]
    foreign = other.get(f"/v1/federation/backends/{backends[0]['id']}")
    assert foreign.status_code == 404 and error_code(foreign) == "federation_backend_not_found"


def test_export_sync_carries_scaivault_changes_to_aws_secrets_manager(admin, moto):
    admin.put("/v1/secrets/infra/aws/sm", json={"data": {"access_key_id": "testing", "secret_access_key": "testing"}})
    admin.put("/v1/secrets/exported/api/key", json={"data": {"key": "k-1"}})
    created = admin.post("/v1/federation/backends", json={
        "name": "aws-prod", "type": "aws-secrets-manager", "mode": "sync", "sync_interval": "5m",
        "config": {"region": "us-east-1", "endpoint": moto.url, "credentials_path": "infra/aws/sm",
                   "direction": "export"},
        "path_mapping": {"exported/**": "prod/**"}})
    assert created.status_code == 201, created.get_json()
    backend_id = created.get_json()["id"]
    sm = moto.client("secretsmanager")

    assert admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()["written"] == 1
    assert json.loads(sm.get_secret_value(SecretId="prod/api/key")["SecretString"]) == {"key": "k-1"}

    admin.put("/v1/secrets/exported/api/key", json={"data": {"key": "k-2"}})
    second = admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()
    assert second["written"] == 1, second
    assert json.loads(sm.get_secret_value(SecretId="prod/api/key")["SecretString"]) == {"key": "k-2"}
    rerun = admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()
    assert rerun["written"] == 0 and rerun["unchanged"] == 1


def test_import_sync_from_aws_secrets_manager_maps_names_to_paths(admin, moto):
    sm = moto.client("secretsmanager")
    sm.create_secret(Name="teamx/db", SecretString=json.dumps({"user": "x", "password": "p"}))
    sm.create_secret(Name="teamx/plain", SecretString="just-a-string")
    admin.put("/v1/secrets/infra/aws/sm2", json={"data": {"access_key_id": "testing", "secret_access_key": "testing"}})
    backend_id = admin.post("/v1/federation/backends", json={
        "name": "aws-in", "type": "aws-secrets-manager", "mode": "sync", "sync_interval": "5m",
        "config": {"region": "us-east-1", "endpoint": moto.url, "credentials_path": "infra/aws/sm2"},
        "path_mapping": {"aws/teamx/**": "teamx/**"}}).get_json()["id"]
    result = admin.post(f"/v1/federation/backends/{backend_id}/sync").get_json()
    assert result["written"] == 2, result
    assert admin.get("/v1/secrets/aws/teamx/db").get_json()["data"] == {"user": "x", "password": "p"}
    assert admin.get("/v1/secrets/aws/teamx/plain").get_json()["data"] == {"value": "just-a-string"}


def test_backend_listings_use_the_shared_pagination(admin, bao):
    vault_backend(admin, bao, name="page-a")
    vault_backend(admin, bao, name="page-b")
    first = admin.get("/v1/federation/backends?limit=1").get_json()
    assert [b["name"] for b in first["backends"]] == ["page-a"] and first["has_more"] is True
    second = admin.get(f"/v1/federation/backends?limit=1&cursor={first['cursor']}").get_json()
    assert [b["name"] for b in second["backends"]] == ["page-b"] and second["has_more"] is False
    tampered = admin.get(f"/v1/federation/backends?limit=1&cursor={first['cursor'][:-2]}xx")
    assert tampered.status_code == 400 and error_code(tampered) == "invalid_cursor"
    assert error_code(admin.get("/v1/federation/backends?limit=0")) == "invalid_request"
