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


def test_under_scaivault_serve_writes_reach_a_webhook_and_a_long_poll(base_env, scaikey):
    """gunicorn + gevent: the worker's scheduler starts the event pump; NOTIFY wakes a long-poll."""
    import threading
    import time

    from tests.clients_support import serve
    from tests.fakes.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver().start()
    instance = serve(base_env, WEBHOOK_ALLOW_HTTP="true", WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    try:
        tenant = new_tenant()
        token = admin_token(scaikey, tenant, scopes=ALL_SCOPES + ("admin", "subscriptions:read", "subscriptions:write"))
        headers = {"Authorization": f"Bearer {token}"}
        made = requests.post(f"{instance.url}/v1/webhooks", headers=headers, timeout=10, json={
            "name": "e2e", "url": receiver.url, "secret": "e" * 32, "events": ["secret.created"]})
        assert made.status_code == 201, made.text
        sub = requests.post(f"{instance.url}/v1/subscriptions", headers=headers, timeout=10, json={
            "name": "e2e", "paths": ["e2e/**"], "events": ["secret.created"], "delivery": {"type": "polling"}}).json()
        result: dict = {}

        def long_poll():
            result["body"] = requests.get(f"{instance.url}/v1/subscriptions/{sub['id']}/poll?timeout=40",
                                          headers=headers, timeout=60).json()

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(1)
        assert requests.put(f"{instance.url}/v1/secrets/e2e/a", headers=headers, timeout=10,
                            json={"data": {"v": "1"}}).status_code == 201
        poller.join(60)
        assert [e["path"] for e in result["body"]["events"]] == ["e2e/a"]
        assert receiver.wait_for(1, timeout=40)           # the scheduler starts the pump 5-15 s after boot
        assert receiver.requests[0]["headers"]["X-ScaiVault-Event-Type"] == "secret.created"
    finally:
        instance.stop()
        receiver.stop()
