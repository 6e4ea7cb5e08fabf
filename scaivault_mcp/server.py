"""`scaivault-mcp`: an MCP server on stdio exposing the tools of scaivault_mcp.tools.

Connection and tenant pinning come from the client configuration (SCAIVAULT_URL,
SCAIVAULT_TOKEN, SCAIVAULT_TENANT_ID, SCAIVAULT_PARTNER_ID, or ~/.scaivault/config.json);
the safety controls from SCAIVAULT_READ_ONLY, SCAIVAULT_MASK_VALUES, SCAIVAULT_ALLOWED_PATHS
and SCAIVAULT_DENIED_PATHS. Tools take no tenant argument: the pinned tenant cannot be changed
by the agent. Logs go to stderr (stdout carries the protocol).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Mapping

from pydantic import ValidationError as ArgumentsInvalid

from scaivault_sdk import ScaiVaultClient, __version__
from scaivault_sdk.config import ClientConfig
from scaivault_sdk.errors import ScaiVaultError

from .controls import Refused, SafetyControls
from .tools import TOOLS

log = logging.getLogger("scaivault_mcp")


def _result(payload: Any, *, error: bool = False):
    import mcp_types as types

    structured = payload if isinstance(payload, dict) else {"result": payload}
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(payload, ensure_ascii=False))],
                                structured_content=structured, is_error=error)


async def call_tool(client: ScaiVaultClient, controls: SafetyControls, name: str, arguments: dict | None):
    """Run one tool: refuse what the controls forbid before any API call; errors become isError results."""
    spec = TOOLS.get(name)
    if spec is None:
        return _result({"error": {"code": "unknown_tool", "message": f"no tool named {name}"}}, error=True)
    try:
        if spec.writes:
            controls.check_write(name)
        args = spec.arguments.model_validate(arguments or {})
        return _result(await spec.handler(client, controls, args))
    except Refused as exc:
        log.info("refused %s by %s", name, exc.control)
        return _result({"error": {"code": "refused_by_mcp_controls", "control": exc.control,
                                  "message": exc.message}}, error=True)
    except ArgumentsInvalid as exc:
        fields = {".".join(str(p) for p in e["loc"]) or "arguments": e["msg"] for e in exc.errors()}
        return _result({"error": {"code": "invalid_arguments", "message": "invalid arguments", "fields": fields}},
                       error=True)
    except ScaiVaultError as exc:
        return _result({"error": {"code": exc.code, "status": exc.status, "message": exc.message,
                                  "request_id": exc.request_id}}, error=True)


def build_server(client: ScaiVaultClient, controls: SafetyControls):
    import mcp_types as types
    from mcp.server.lowlevel import Server

    tools = [types.Tool(name=spec.name, description=spec.description, input_schema=spec.input_schema(),
                        annotations=types.ToolAnnotations(read_only_hint=not spec.writes,
                                                          destructive_hint=spec.writes))
             for spec in TOOLS.values() if not (spec.writes and controls.read_only)]

    async def on_list_tools(ctx, params):
        return types.ListToolsResult(tools=tools)

    async def on_call_tool(ctx, params):
        return await call_tool(client, controls, params.name, params.arguments)

    return Server("scaivault", version=__version__, on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_stdio(env: Mapping[str, str]) -> None:
    from mcp.server.stdio import stdio_server

    config = ClientConfig.load(env)
    controls = SafetyControls.from_env(env)
    if not config.base_url:
        raise SystemExit("scaivault-mcp: set SCAIVAULT_URL (and SCAIVAULT_TOKEN)")
    async with ScaiVaultClient(config.base_url, config.token, **config.client_kwargs()) as client:
        server = build_server(client, controls)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scaivault-mcp", description="ScaiVault MCP server (stdio). Connection: SCAIVAULT_URL, SCAIVAULT_TOKEN, "
        "SCAIVAULT_TENANT_ID, SCAIVAULT_PARTNER_ID. Safety: SCAIVAULT_READ_ONLY=true, SCAIVAULT_MASK_VALUES=true, "
        "SCAIVAULT_ALLOWED_PATHS=a/,b/, SCAIVAULT_DENIED_PATHS=c/ (they only narrow what the token allows).")
    parser.add_argument("--version", action="version", version=f"scaivault-mcp {__version__}")
    parser.add_argument("--list-tools", action="store_true", help="print the tool names and exit")
    args = parser.parse_args(argv)
    if args.list_tools:
        for spec in TOOLS.values():
            print(f"{spec.name}{' (writes)' if spec.writes else ''}: {spec.description.splitlines()[0]}")
        return 0
    env = dict(os.environ)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if env.get("SCAIVAULT_DEBUG") == "1" else logging.WARNING)
    import anyio

    anyio.run(serve_stdio, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
