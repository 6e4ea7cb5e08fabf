"""`scaivault tokens ...`: the caller's personal access tokens."""
from __future__ import annotations

import click

from . import ClientGroup, sdk
from .output import respond, json_option, print_json, print_table


@click.group("tokens", cls=ClientGroup, help="Your personal access tokens (skt_...).")
def tokens_group() -> None:
    pass


@tokens_group.command("create", help="Create a token; its value is printed once (on stdout, alone, unless --json).")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope such as secrets:read (repeatable).")
@click.option("--expires-in", default=None, help="Lifetime such as 30d (default 90d).")
@json_option
@click.pass_context
def create(ctx: click.Context, name: str, scopes: tuple[str, ...], expires_in: str | None, as_json: bool) -> None:
    created = sdk(ctx).tokens.create(name, list(scopes), expires_in=expires_in)
    if as_json:
        print_json(created)
        return
    click.echo(f"created token {created.id} ({created.name}), expires {created.expires_at}; "
               "it is shown only now:", err=True)
    click.echo(created.token)


@tokens_group.command("list", help="Your tokens (never their values).")
@json_option
@click.pass_context
def list_tokens(ctx: click.Context, as_json: bool) -> None:
    items = sdk(ctx).tokens.list()
    if as_json:
        print_json({"tokens": items})
        return
    print_table(["id", "name", "status", "scopes", "expires", "last used"],
                [[t.id, t.name, t.status, t.scopes, t.expires_at, t.last_used_at] for t in items],
                empty="(no tokens)")


@tokens_group.command("revoke", help="Revoke one of your tokens.")
@click.argument("token_id")
@json_option
@click.pass_context
def revoke(ctx: click.Context, token_id: str, as_json: bool) -> None:
    token = sdk(ctx).tokens.revoke(token_id)
    respond(as_json, token, f"revoked {token.id} ({token.name})")
