"""`scaivault config`, `scaivault auth` and `scaivault completion`."""
from __future__ import annotations

import sys

import click

from . import ClientGroup, client_config, env, sdk
from .output import EXIT_VALIDATION, fail, json_option, print_fields, print_json


@click.group("config", cls=ClientGroup, help="Client settings in ~/.scaivault/config.json (mode 0600).")
def config_group() -> None:
    pass


@config_group.command("set", help="Set KEY (base_url, tenant_id, partner_id, timeout, ca_cert, client_id, "
                                  "scaikey_url, ...) to VALUE. Put tokens in with `auth login`, not here.")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> None:
    from scaivault_sdk.config import ClientConfig, config_path, update_file

    key = {"url": "base_url"}.get(key, key)
    if key not in ClientConfig.keys():
        fail(f"unknown key {key!r}; known: {', '.join(ClientConfig.keys())}", EXIT_VALIDATION)
    if value == "-":
        value = sys.stdin.readline().strip()
    path = config_path(env(ctx))
    update_file({key: value}, path)
    click.echo(f"{key} saved in {path}")


@config_group.command("unset", help="Remove KEY from the configuration file.")
@click.argument("key")
@click.pass_context
def config_unset(ctx: click.Context, key: str) -> None:
    from scaivault_sdk.config import config_path, update_file

    update_file({{"url": "base_url"}.get(key, key): None}, config_path(env(ctx)))
    click.echo(f"{key} removed")


@config_group.command("show", help="The effective configuration (file plus environment); secrets shortened.")
@json_option
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    from scaivault_sdk.config import config_path

    values = client_config(ctx).redacted()
    if as_json:
        print_json({**values, "path": str(config_path(env(ctx)))})
        return
    print_fields([("path", str(config_path(env(ctx)))), *values.items()])


@click.group("auth", cls=ClientGroup, help="Log in with a token and see who you are.")
def auth_group() -> None:
    pass


@auth_group.command("login", help="Check a token against the server and save it (mode 0600). Without --token, "
                                  "or with --token -, it is read from stdin or a hidden prompt.")
@click.option("--token", help="The token (skt_... or a JWT); '-' or omitted: read it without echoing it.")
@click.pass_context
def login(ctx: click.Context, token: str | None) -> None:
    from scaivault_sdk import SyncScaiVaultClient
    from scaivault_sdk.config import config_path, update_file

    if token in (None, "-"):
        token = (click.prompt("Token", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()).strip()
    if not token:
        fail("no token given", EXIT_VALIDATION)
    config = client_config(ctx)
    if not config.base_url:
        fail("no server URL: run `scaivault config set base_url URL` first (or set SCAIVAULT_URL)", 1)
    kwargs = {k: v for k, v in config.client_kwargs().items() if k not in ("client_id", "client_secret", "scaikey_url")}
    with SyncScaiVaultClient(config.base_url, token, **kwargs) as client:
        me = client.auth.whoami()
    path = config_path(env(ctx))
    update_file({"token": token}, path)
    click.echo(f"logged in as {me.identity_id} (tenant {me.tenant_id or '-'}); token saved in {path}")


@auth_group.command("logout", help="Remove the saved token from the configuration file.")
@click.pass_context
def logout(ctx: click.Context) -> None:
    from scaivault_sdk.config import config_path, update_file

    update_file({"token": None}, config_path(env(ctx)))
    click.echo("token removed")


@auth_group.command("whoami", help="The identity, tenant, scopes and roles of the current token.")
@json_option
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    me = sdk(ctx).auth.whoami()
    if as_json:
        print_json(me)
        return
    print_fields([("identity", me.identity_id), ("type", me.identity_type), ("name", me.display_name),
                  ("tenant", me.tenant_id), ("partner", me.partner_id), ("scopes", me.scopes),
                  ("roles", me.roles), ("groups", me.groups), ("expires", me.token_expires_at)])


@click.command("completion", help="Print the shell completion script: eval \"$(scaivault completion bash)\".")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    script = get_completion_class(shell)(root.command, {}, "scaivault", "_SCAIVAULT_COMPLETE").source()
    click.echo(script)


completion.client_command = True
