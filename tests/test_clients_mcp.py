"""scaivault-mcp driven over stdio by the `mcp` package's own client, against a real `scaivault serve`:
tool listing with typed schemas, calls, and the safety controls refusing and masking before the API."""
from __future__ import annotations

import json
import sys

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from scaivault_mcp.controls import MASK, Refused, SafetyControls
from scaivault_sdk import SyncScaiVaultClient
from tests.clients_support import admin_token, new_tenant, vault  # noqa: F401
from tests.foundation_support import child_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tenant_setup(vault, scaikey):
    tenant = new_tenant()
    token = admin_token(scaikey, tenant)
    with SyncScaiVaultClient(vault.url, token) as client:
        client.secrets.write("apps/web/db", {"password": "web-pw-77"})
        client.secrets.write("apps/web/api", {"key": "api-key-88"})
        client.secrets.write("apps/website/x", {"v": "site"})
        client.secrets.write("infra/root", {"password": "root-pw-99"})
    return tenant, token


def run_mcp(vault, token: str, calls, **controls: str):
    """Start scaivault-mcp as a subprocess, list its tools, run `calls` [(tool, args)], return both."""
    env = child_env({"SCAIVAULT_URL": vault.url, "SCAIVAULT_TOKEN": token, "HOME": "/nonexistent", **controls})

    async def session():
        params = StdioServerParameters(command=sys.executable, args=["-m", "scaivault_mcp.server"], env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                tools = {t.name: t for t in (await s.list_tools()).tools}
                results = []
                for name, args in calls:
                    result = await s.call_tool(name, args)
                    results.append((result.is_error, json.loads(result.content[0].text)))
                return tools, results

    return anyio.run(session)


def test_tools_are_listed_with_typed_schemas_and_calls_reach_the_server(vault, tenant_setup):
    tenant, token = tenant_setup
    tools, results = run_mcp(vault, token, [
        ("scaivault_write_secret", {"path": "apps/web/new", "data": {"k": "fresh-1"}}),
        ("scaivault_read_secret", {"path": "apps/web/new"}),
        ("scaivault_list_secrets", {"prefix": "apps/web"}),
        ("scaivault_get_secret_versions", {"path": "apps/web/new"}),
        ("scaivault_get_secret_metadata", {"path": "apps/web/new"}),
        ("scaivault_read_secret", {"path": "apps/web/none"}),
        ("scaivault_read_secret", {"path": "apps/web/new", "version": "two"}),
        ("scaivault_create_policy", {"name": "mcp-readers", "rules": [{"path_pattern": "apps/web/*",
                                                                       "permissions": ["read"]}]}),
        ("scaivault_query_audit_logs", {"path_prefix": "apps/web/new"}),
        ("scaivault_whoami", {}),
    ])
    assert all(name.startswith("scaivault_") for name in tools) and len(tools) >= 20
    schema = tools["scaivault_write_secret"].input_schema
    assert schema["required"] == ["path", "data"] and schema["properties"]["cas"]["anyOf"][0]["type"] == "integer"
    assert tools["scaivault_read_secret"].annotations.read_only_hint is True
    assert tools["scaivault_delete_secret"].annotations.destructive_hint is True
    wrote, read, listed, versions, meta, missing, bad, policy, audit, me = results
    assert wrote == (False, wrote[1]) and wrote[1]["version"] == 1
    assert read[1]["data"] == {"k": "fresh-1"}
    assert [s["path"] for s in listed[1]["secrets"]] == ["apps/web/api", "apps/web/db", "apps/web/new"]
    assert versions[1]["current_version"] == 1 and meta[1]["version_count"] == 1
    assert missing[0] is True and missing[1]["error"]["code"] == "secret_not_found"
    assert bad[0] is True and bad[1]["error"]["code"] == "invalid_arguments" and "version" in bad[1]["error"]["fields"]
    assert policy[0] is False and policy[1]["name"] == "mcp-readers"
    assert {"read", "write"} <= {e["action"] for e in audit[1]["logs"]}
    assert {e["secret_path"] for e in audit[1]["logs"]} == {"apps/web/new"}
    assert me[1]["tenant_id"] == tenant and me[1]["mcp_controls"]["read_only"] is False


def test_read_only_hides_and_refuses_every_write_and_reads_still_work(vault, tenant_setup):
    tenant, token = tenant_setup
    tools, results = run_mcp(vault, token, [
        ("scaivault_write_secret", {"path": "apps/web/db", "data": {"password": "overwritten"}}),
        ("scaivault_delete_secret", {"path": "apps/web/db"}),
        ("scaivault_create_policy", {"name": "x", "rules": [{"path_pattern": "apps/*", "permissions": ["read"]}]}),
        ("scaivault_read_secret", {"path": "apps/web/db"}),
    ], SCAIVAULT_READ_ONLY="true")
    assert not any(t for t in tools.values() if not t.annotations.read_only_hint)
    for error, body in results[:3]:
        assert error is True and body["error"]["control"] == "SCAIVAULT_READ_ONLY"
    assert results[3] == (False, results[3][1]) and results[3][1]["data"] == {"password": "web-pw-77"}
    with SyncScaiVaultClient(vault.url, token) as client:      # nothing reached the server
        assert client.secrets.read("apps/web/db").version == 1


def test_masking_hides_values_but_confirms_keys(vault, tenant_setup):
    tenant, token = tenant_setup
    _, results = run_mcp(vault, token, [
        ("scaivault_read_secret", {"path": "apps/web/db"}),
        ("scaivault_batch_read_secrets", {"paths": ["apps/web/db", "apps/web/api"]}),
    ], SCAIVAULT_MASK_VALUES="true")
    (_, single), (_, batch) = results
    assert single["data"] == {"password": MASK} and single["version"] == 1
    assert batch["secrets"]["apps/web/api"]["data"] == {"key": MASK}
    everything = json.dumps(results)
    assert "web-pw-77" not in everything and "api-key-88" not in everything


def test_allowed_and_denied_prefixes_refuse_before_the_api_and_filter_listings(vault, tenant_setup):
    tenant, token = tenant_setup
    _, results = run_mcp(vault, token, [
        ("scaivault_read_secret", {"path": "infra/root"}),
        ("scaivault_read_secret", {"path": "apps/website/x"}),           # segment-aware: not under apps/web
        ("scaivault_read_secret", {"path": "apps/web/api"}),             # denied even though allowed
        ("scaivault_read_secret", {"path": "apps/web/../../infra/root"}),
        ("scaivault_list_secrets", {"prefix": ""}),
        ("scaivault_read_secret", {"path": "apps/web/db"}),
        ("scaivault_create_policy", {"name": "wide", "rules": [{"path_pattern": "apps/**", "permissions": ["read"]}]}),
    ], SCAIVAULT_ALLOWED_PATHS="apps/web", SCAIVAULT_DENIED_PATHS="apps/web/api")
    outside, website, denied, dotted, listed, allowed, wide = results
    assert outside[1]["error"]["control"] == "SCAIVAULT_ALLOWED_PATHS"
    assert website[1]["error"]["control"] == "SCAIVAULT_ALLOWED_PATHS"
    assert denied[1]["error"]["control"] == "SCAIVAULT_DENIED_PATHS"
    assert dotted[0] is True and dotted[1]["error"]["code"] == "invalid_path"
    assert {s["path"] for s in listed[1]["secrets"]} >= {"apps/web/db"}
    assert all(s["path"].startswith("apps/web/") and s["path"] != "apps/web/api" for s in listed[1]["secrets"])
    assert allowed[1]["data"] == {"password": "web-pw-77"}
    assert wide[1]["error"]["control"] == "SCAIVAULT_ALLOWED_PATHS"


def test_the_controls_only_narrow_and_match_whole_segments():
    controls = SafetyControls(allowed=("apps/web",), denied=("apps/web/secret",))
    assert controls.check_path("/apps/web/db/") == "apps/web/db"
    for path, control in (("apps/website", "SCAIVAULT_ALLOWED_PATHS"), ("apps/web/secret/x", "SCAIVAULT_DENIED_PATHS")):
        with pytest.raises(Refused) as caught:
            controls.check_path(path)
        assert caught.value.control == control
    assert controls.check_listing("apps") == "apps"              # a parent: listed, then filtered
    controls.check_pattern("apps/web/db/*")
    for pattern in ("apps/we*", "**", "apps/web/**"):             # too wide, or reaches the denied prefix
        with pytest.raises(Refused):
            controls.check_pattern(pattern)
    assert SafetyControls.from_env({"SCAIVAULT_READ_ONLY": "TRUE", "SCAIVAULT_ALLOWED_PATHS": " a/, b "}) == \
        SafetyControls(read_only=True, allowed=("a", "b"))


def test_the_tenant_is_pinned_by_the_environment_and_no_tool_takes_one(vault, tenant_setup):
    tenant, token = tenant_setup
    tools, results = run_mcp(vault, token, [("scaivault_read_secret", {"path": "apps/web/db"}),
                                            ("scaivault_read_secret", {"path": "apps/web/db", "tenant_id": tenant})],
                             SCAIVAULT_TENANT_ID=new_tenant())
    assert not any("tenant" in name for t in tools.values() for name in t.input_schema.get("properties", {}))
    pinned, smuggled = results
    assert pinned[0] is True and pinned[1]["error"]["status"] == 403      # the other tenant, not the token's
    assert smuggled[1]["error"]["code"] == "invalid_arguments"
