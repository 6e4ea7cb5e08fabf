"""The client subcommands of `scaivault` (config, auth, secrets, policies, tokens, audit, completion),
built on scaivault_sdk. The SDK (and with it httpx and ssl) is imported only when one of them runs."""
from __future__ import annotations

import logging
from typing import Any

import click

from .output import exit_code_for, fail


class ClientGroup(click.Group):
    """A group of client commands: SDK errors become one stderr line and the documented exit code."""

    client_command = True

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            from scaivault_sdk.errors import ScaiVaultConnectionError, ScaiVaultError

            if not isinstance(exc, ScaiVaultError):
                raise
            message = str(exc)
            if isinstance(exc, ScaiVaultConnectionError) and exc.maybe_applied:
                message += " (the request may have been applied: check before repeating it)"
            fail(message, exit_code_for(exc))


def client_config(ctx: click.Context):
    from scaivault_sdk.config import ClientConfig

    root = ctx.find_root()
    cached = root.meta.get("scaivault.client_config")
    if cached is None:
        from scaivault_sdk.config import config_path

        path = config_path(env(ctx))
        cached = ClientConfig.load(env(ctx), path)
        root.meta["scaivault.client_config"] = cached
        if path.exists() and path.stat().st_mode & 0o077:
            click.echo(f"scaivault: warning: {path} is readable by others; run chmod 600 {path}", err=True)
        if cached.debug:
            logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    return cached


def env(ctx: click.Context) -> dict[str, str]:
    return (ctx.find_root().obj or {}).get("env") or {}


def sdk(ctx: click.Context):
    """The SyncScaiVaultClient for this invocation (closed when the command ends)."""
    from scaivault_sdk import SyncScaiVaultClient
    from scaivault_sdk.errors import ConfigurationError

    config = client_config(ctx)
    if not config.base_url:
        raise ConfigurationError("no server URL: run `scaivault config set base_url URL` or set SCAIVAULT_URL",
                                 code="missing_url")
    if not (config.token or config.client_id):
        raise ConfigurationError("not logged in: run `scaivault auth login --token ...` or set SCAIVAULT_TOKEN",
                                 code="missing_token")
    client = SyncScaiVaultClient(config.base_url, config.token, **config.client_kwargs())
    ctx.call_on_close(client.close)
    return client


def register_client_commands(cli: click.Group) -> None:
    from . import audit, auth, importers, policies, secrets, tokens

    for group in (auth.config_group, auth.auth_group, secrets.secrets_group, policies.policies_group,
                  tokens.tokens_group, audit.audit_group, importers.import_group):
        cli.add_command(group)
    cli.add_command(auth.completion)
