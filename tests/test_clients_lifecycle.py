"""Rotation policies and webhooks through the clients, against a real `scaivault serve`: the SDK's
`rotation` and `webhooks` namespaces, the `scaivault rotation` and `scaivault webhooks` groups in human
and --json forms, and the MCP rotate tool (allowed, and refused when read-only)."""
from __future__ import annotations

import pytest

from scaivault_sdk import NotFoundError, SyncScaiVaultClient
from tests.clients_support import ALL_SCOPES, admin_token, new_tenant, ok, run, run_mcp, vault  # noqa: F401

pytestmark = pytest.mark.slow

RECIPE = [{"name": "token", "generator": "hex", "config": {"length": 32}}]
HOOK_SECRET = "whsec-" + "x" * 32


@pytest.fixture(scope="module")
def token(scaikey):
    return admin_token(scaikey, new_tenant(), scopes=ALL_SCOPES + ("admin",))


def test_the_sdk_manages_rotation_policies_and_webhooks(vault, token):
    with SyncScaiVaultClient(vault.url, token) as client:
        recipe = client.rotation.create_secret_policy("tok", RECIPE, policy_type="api_key")
        assert recipe.id in [p["id"] for p in client.rotation.secret_policies()]
        policy = client.rotation.create_policy("monthly", "30d", auto_generate=True, secret_policy_id=recipe.id)
        assert client.rotation.get_policy(policy.id).interval == "30d"
        assert policy.id in [p["id"] for p in client.rotation.policies()]
        client.secrets.write("rot/sdk", {"token": "t0"})
        client.rotation.attach(policy.id, "rot/sdk")
        outcome = client.rotation.rotate(policy.id, ["rot/sdk"])
        assert outcome
        assert len(client.secrets.read("rot/sdk").data["token"]) == 32
        history = client.rotation.history(policy.id)
        assert [h["secret_path"] for h in history["data"]] == ["rot/sdk"] and history["data"][0]["status"] == "success"
        client.rotation.detach(policy.id, "rot/sdk")
        client.rotation.delete_policy(policy.id)
        with pytest.raises(NotFoundError):
            client.rotation.get_policy(policy.id)

        hook = client.webhooks.create("ops", "https://example.com/hook", HOOK_SECRET, ["secret.*"],
                                      filters={"path_prefix": "rot/"})
        assert hook.events == ["secret.*"] and "secret" not in hook.model_dump()
        assert [w.id for w in client.webhooks.list()] == [hook.id]
        assert client.webhooks.update(hook.id, enabled=False).enabled is False
        assert "deliveries" in client.webhooks.deliveries(hook.id)
        client.webhooks.delete(hook.id)
        assert list(client.webhooks.list()) == []


def test_the_rotation_and_webhooks_command_groups(vault, token, tmp_path):
    env = {"HOME": str(tmp_path), "SCAIVAULT_URL": vault.url, "SCAIVAULT_TOKEN": token}
    with SyncScaiVaultClient(vault.url, token) as client:
        recipe = client.rotation.create_secret_policy("tok-cli", RECIPE)
        client.secrets.write("rot/cli", {"token": "t0"})
    made = ok(["rotation", "create", "weekly", "--interval", "7d", "--secret-policy", recipe.id, "--auto-generate",
               "--json"], env).json()
    assert made["interval"] == "7d"
    assert "weekly" in ok(["rotation", "list"], env).out
    assert made["id"] in [p["id"] for p in ok(["rotation", "list", "--json"], env).json()["policies"]]
    assert "7d" in ok(["rotation", "get", made["id"]], env).out
    assert "attached rot/cli" in ok(["rotation", "attach", made["id"], "rot/cli"], env).out
    ok(["rotation", "rotate", made["id"], "--path", "rot/cli"], env)
    assert ok(["rotation", "rotate", made["id"], "--path", "rot/cli", "--json"], env).json()
    history = ok(["rotation", "history", made["id"], "--json"], env).json()["data"]
    assert len(history) == 2 and {h["status"] for h in history} == {"success"}
    assert "rot/cli" in ok(["rotation", "history", made["id"]], env).out
    assert "detached" in ok(["rotation", "detach", made["id"], "rot/cli"], env).out
    assert "deleted rotation policy" in ok(["rotation", "delete", made["id"]], env).out
    assert run(["rotation", "get", made["id"]], env).code == 4

    created = ok(["webhooks", "create", "cli-hook", "--url", "https://example.com/h", "--event", "secret.created",
                  "--json"], env, input=HOOK_SECRET + "\n").json()
    assert created["name"] == "cli-hook" and HOOK_SECRET not in str(created)
    assert "cli-hook" in ok(["webhooks", "list"], env).out
    assert ok(["webhooks", "list", "--json"], env).json()["webhooks"][0]["id"] == created["id"]
    assert "deliveries" in ok(["webhooks", "deliveries", created["id"], "--json"], env).json()
    assert "deleted webhook" in ok(["webhooks", "delete", created["id"]], env).out
    assert run(["webhooks", "create", "x", "--url", "https://example.com/h", "--event", "secret.created"], env,
               input="\n").code == 5


def test_the_mcp_rotate_tool_rotates_and_is_refused_when_read_only(vault, token):
    with SyncScaiVaultClient(vault.url, token) as client:
        recipe = client.rotation.create_secret_policy("tok-mcp", RECIPE)
        policy = client.rotation.create_policy("mcp", "30d", auto_generate=True, secret_policy_id=recipe.id)
        client.secrets.write("rot/mcp", {"token": "t0"})
        client.rotation.attach(policy.id, "rot/mcp")
    _, results = run_mcp(vault, token, [("scaivault_rotate_secret", {"path": "rot/mcp"})], SCAIVAULT_READ_ONLY="true")
    assert results[0][0] is True and results[0][1]["error"]["control"] == "SCAIVAULT_READ_ONLY"
    _, results = run_mcp(vault, token, [("scaivault_rotate_secret", {"path": "rot/mcp"}),
                                        ("scaivault_read_secret", {"path": "rot/mcp"})], SCAIVAULT_MASK_VALUES="true")
    (err, rotated), (_, read) = results
    assert err is False and rotated["status"] == "success" and read["version"] == 2
    assert read["data"] == {"token": "••••••"}
