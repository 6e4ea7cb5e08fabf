"""The clients' rotation commands against a served instance: SDK `secrets.rotate/generate`, CLI `secrets rotate`."""
from __future__ import annotations

import pytest
import requests

from scaivault_sdk import SyncScaiVaultClient
from tests.clients_support import ALL_SCOPES, admin_token, new_tenant, vault  # noqa: F401
from tests.test_clients_cli import run

pytestmark = pytest.mark.slow


def test_sdk_rotate_and_generate_and_the_cli_rotate_command(vault, scaikey, tmp_path):  # noqa: F811
    tenant = new_tenant()
    token = admin_token(scaikey, tenant, scopes=ALL_SCOPES + ("admin",))
    headers = {"Authorization": f"Bearer {token}"}
    sp = requests.post(f"{vault.url}/v1/secret-policies", headers=headers, timeout=10, json={
        "name": "tok", "fields": [{"name": "token", "generator": "hex", "config": {"length": 40}}]}).json()
    rot = requests.post(f"{vault.url}/v1/rotation/policies", headers=headers, timeout=10, json={
        "name": "r", "interval": "30d", "auto_generate": True, "secret_policy_id": sp["id"]}).json()
    with SyncScaiVaultClient(vault.url, token) as client:
        client.secrets.write("cl/rot", {"token": "t0"}, rotation_policy_id=rot["id"])
        item = client.secrets.rotate("cl/rot")
        assert item["status"] == "success" and item["new_version"] == 2
        value = client.secrets.read("cl/rot").data["token"]
        assert len(value) == 40 and value != "t0"
        info = client.secrets.generate("cl/gen", secret_policy_id=sp["id"])
        assert info.version == 1
    env = {"HOME": str(tmp_path), "SCAIVAULT_URL": vault.url, "SCAIVAULT_TOKEN": token}
    ran = run(["secrets", "rotate", "cl/rot", "--json"], env)
    assert ran.code == 0 and ran.json()["new_version"] == 3, ran
    human = run(["secrets", "rotate", "cl/rot"], env)
    assert human.code == 0 and "rotated cl/rot: success, version 4" in human.out
