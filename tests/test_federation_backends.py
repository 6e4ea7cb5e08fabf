"""Every federation backend plugin against its store: OpenBao (KV v2), moto's Secrets Manager, and
small HTTP(S) fakes of Azure Key Vault and Secret Manager driven by the real SDKs.

The same checks for each: write then read back with a version id, list under a prefix, a
missing path, delete, and an unreachable store failing fast with federation_unavailable.
"""
from __future__ import annotations

import time

import pytest

from scaivault.federation import FederationUnavailable, RemoteNotFound
from scaivault.plugins import registrations
from tests.fakes.azure_keyvault import FakeKeyVault
from tests.fakes.gcp_secret_manager import FakeSecretManager
from tests.fakes.servers import OPENBAO_ROOT_TOKEN, MotoServer, closed_port_url, start_openbao
from tests.secrets_support import ADMIN_SCOPES, HIGH_RATE_LIMITS, Callers, new_tenant

pytestmark = pytest.mark.slow
AZURE_TOKEN = "azure-" + "bearer"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    bao = start_openbao(tmp_path_factory.mktemp("bao-backends"))
    moto = MotoServer().start()
    azure = FakeKeyVault(tmp_path_factory.mktemp("akv"), AZURE_TOKEN).start()
    gcp = FakeSecretManager().start()
    yield {
        "hashicorp-vault": ({"endpoint": bao.url, "auth_method": "token"}, {"token": OPENBAO_ROOT_TOKEN},
                            "secret/data/conf"),
        "aws-secrets-manager": ({"region": "us-east-1", "endpoint": moto.url},
                                {"access_key_id": "testing", "secret_access_key": "testing"}, "conf"),
        "azure-key-vault": ({"vault_url": azure.url, "ca_file": azure.ca_file}, {"token": AZURE_TOKEN}, "conf"),
        "google-secret-manager": ({"project": gcp.project, "endpoint": gcp.url}, {}, "conf"),
    }
    gcp.stop()
    azure.stop()
    moto.stop()
    bao.stop()


TYPES = ["hashicorp-vault", "aws-secrets-manager", "azure-key-vault", "google-secret-manager"]


def backend(stores, kind, **config_overrides):
    config, credentials, prefix = stores[kind]
    factory = registrations("scaivault_federation_backends")[kind].factory
    return factory({**config, **config_overrides}, credentials, 2.0), prefix


@pytest.mark.parametrize("kind", TYPES)
def test_a_backend_writes_reads_lists_and_deletes(stores, kind):
    client, prefix = backend(stores, kind)
    try:
        client.check()
        first = client.write(f"{prefix}/app/db", {"user": "u", "password": "p-1"})
        second = client.write(f"{prefix}/app/db", {"user": "u", "password": "p-2"})
        assert first and second and first != second
        got = client.read(f"{prefix}/app/db")
        assert got.data == {"user": "u", "password": "p-2"} and got.version == second
        client.write(f"{prefix}/app/cache", {"url": "redis://x"})
        client.write(f"{prefix}/other/thing", {"v": "1"})
        listed = sorted(client.list(f"{prefix}/app/"))
        assert listed == [f"{prefix}/app/cache", f"{prefix}/app/db"]
        with pytest.raises(RemoteNotFound):
            client.read(f"{prefix}/app/none")
        client.delete(f"{prefix}/app/cache")
        with pytest.raises(RemoteNotFound):
            client.read(f"{prefix}/app/cache")
    finally:
        client.close()


@pytest.mark.parametrize("kind", TYPES)
def test_an_unreachable_store_fails_fast_with_federation_unavailable(stores, kind):
    down = closed_port_url("https" if kind == "azure-key-vault" else "http")
    field = {"hashicorp-vault": "endpoint", "aws-secrets-manager": "endpoint", "azure-key-vault": "vault_url",
             "google-secret-manager": "endpoint"}[kind]
    client, prefix = backend(stores, kind, **{field: down})
    started = time.monotonic()
    try:
        with pytest.raises(FederationUnavailable):
            client.read(f"{prefix}/app/db")
    finally:
        client.close()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("kind", ["azure-key-vault", "google-secret-manager"])
def test_cloud_backends_import_through_the_api(make_app, scaikey, stores, kind):
    client, prefix = backend(stores, kind)
    client.write(f"{prefix}/imported/api", {"key": f"{kind}-value"})
    client.close()
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    admin = Callers(scaikey, app.test_client()).user(
        f"admin@{tenant}.example", tenant, role="tenant_admin",
        scopes=ADMIN_SCOPES + ("federation:read", "federation:write"))
    config, credentials, _ = stores[kind]
    if credentials:
        admin.put("/v1/secrets/infra/cloud", json={"data": credentials})
        config = {**config, "credentials_path": "infra/cloud"}
    created = admin.post("/v1/federation/backends", json={
        "name": "cloud", "type": kind, "mode": "sync", "sync_interval": "10m", "config": config,
        "path_mapping": {"cloud/**": f"{prefix}/imported/**"}})
    assert created.status_code == 201, created.get_json()
    result = admin.post(f"/v1/federation/backends/{created.get_json()['id']}/sync").get_json()
    assert result["written"] == 1, result
    assert admin.get("/v1/secrets/cloud/api").get_json()["data"] == {"key": f"{kind}-value"}
