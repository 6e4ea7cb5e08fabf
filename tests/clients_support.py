"""Helpers for the client tests (CLI, SDK, MCP): one served ScaiVault per module and tokens for it."""
from __future__ import annotations

import asyncio
import inspect
import json
import secrets as pyrandom
import sys
from dataclasses import dataclass

import anyio
import pytest
from click.testing import CliRunner
from mcp import ClientSession, StdioServerParameters, stdio_client

from scaivault.cli import main

from scaivault_sdk import RetryPolicy, ScaiVaultClient, SyncScaiVaultClient

from tests.foundation_support import ServedInstance, child_env, get_ready
from tests.secrets_support import ADMIN_SCOPES

ALL_SCOPES = ADMIN_SCOPES + ("audit:read", "audit:export", "dynamic:read", "dynamic:manage", "pki:admin", "pki:issue")
FAST = RetryPolicy(max_retries=3, backoff_base=0.05, backoff_max=0.2, max_wait=5)


def serve(base_env: dict, **overrides: str) -> ServedInstance:
    instance = ServedInstance({**base_env, **overrides}).start()
    assert get_ready(instance.url).status_code == 200, "served instance never became ready"
    return instance


@pytest.fixture(scope="module")
def vault(base_env):
    """One served instance per test module (import this fixture into the module)."""
    instance = serve(base_env)
    yield instance
    instance.stop()


def new_tenant() -> str:
    return "tnt_cl" + pyrandom.token_hex(4)


def admin_token(scaikey, tenant: str, scopes=ALL_SCOPES) -> str:
    """A tenant admin's JWT: every secrets, policies and audit scope."""
    return scaikey.mint(sub="usr_" + pyrandom.token_hex(6), email=f"admin-{pyrandom.token_hex(3)}@{tenant}.example",
                        tenant_id=tenant, partner_id="ptn_test", scopes=scopes, role="tenant_admin")


def user_token(scaikey, tenant: str, scopes=("secrets:read", "secrets:list")) -> str:
    """A plain user's JWT with no policy bound: scopes but no grants."""
    return scaikey.mint(sub="usr_" + pyrandom.token_hex(6), email=f"user-{pyrandom.token_hex(3)}@{tenant}.example",
                        tenant_id=tenant, partner_id="ptn_test", scopes=scopes)


class Both:
    """Runs one scenario with either client: `run(lambda c: c.secrets.read(...))` awaits when async."""

    def __init__(self, kind: str, url: str, token: str, **kwargs):
        self.kind = kind
        if kind == "sync":
            self.client = SyncScaiVaultClient(url, token, retry=kwargs.pop("retry", FAST), **kwargs)
        else:
            self.client = ScaiVaultClient(url, token, retry=kwargs.pop("retry", FAST), **kwargs)
            self.loop = asyncio.new_event_loop()

    def run(self, fn):
        result = fn(self.client)
        if self.kind == "async":
            if inspect.isasyncgen(result):
                async def collect():
                    return [item async for item in result]
                return self.loop.run_until_complete(collect())
            return self.loop.run_until_complete(result)
        return list(result) if inspect.isgenerator(result) else result

    def close(self):
        if self.kind == "sync":
            self.client.close()
        else:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run(args: list[str], env: dict, input: str | None = None) -> Ran:
    """`scaivault ARGS` in this process (the real main(): click tree, SDK, HTTP to the served instance)."""
    with CliRunner().isolation(input=input) as (out, err, _):
        try:
            code = main(args, env)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Ran(code, out.getvalue().decode(), err.getvalue().decode())


def ok(args, env, input=None) -> Ran:
    result = run(args, env, input)
    assert result.code == 0, (args, result)
    return result


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
