"""`scaivault secrets ...`: read, write, list, delete, restore, versions, metadata, expiring, destroy.

Values for `write` come from KEY=VALUE, KEY=@FILE, KEY=- (stdin), a JSON object from `-` or
--json-file: a secret never has to appear on the command line (or in the process list).
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import ClientGroup, sdk
from .output import (respond, EXIT_NOT_FOUND, EXIT_VALIDATION, fail, json_option, print_fields, print_json, print_table,
                     to_plain)

PARTNER = click.option("--partner", is_flag=True, help="Act on the partner's shared secrets (/v1/partner/secrets).")


@click.group("secrets", cls=ClientGroup, help="Read, write, list and manage secrets.")
def secrets_group() -> None:
    pass


# ------------------------------------------------------------------ read
@secrets_group.command("read", help="Print a secret's value (the current version unless --version).")
@click.argument("path")
@click.option("--version", type=click.IntRange(min=1), help="Read this version.")
@click.option("--field", help="Print only this key of the value (raw, for scripts).")
@PARTNER
@json_option
@click.pass_context
def read(ctx: click.Context, path: str, version: int | None, field: str | None, partner: bool, as_json: bool) -> None:
    secret = sdk(ctx).secrets.read(path, version=version, partner=partner)
    if field is not None:
        if field not in secret.data:
            fail(f"{path} version {secret.version} has no field {field!r}", EXIT_NOT_FOUND)
        value = secret.data[field]
        if as_json:
            print_json({field: value})
        else:
            click.echo(value if isinstance(value, str) else json.dumps(value))
        return
    if as_json:
        print_json(secret)
        return
    click.echo(f"{secret.path}  version {secret.version}  type {to_plain(secret.secret_type)}")
    print_table(["key", "value"], sorted(secret.data.items()), empty="(no keys)")


# ------------------------------------------------------------------ write
def _read_stdin_once(ctx: click.Context) -> str:
    if ctx.meta.get("scaivault.stdin_used"):
        fail("stdin can feed only one value", EXIT_VALIDATION)
    ctx.meta["scaivault.stdin_used"] = True
    return sys.stdin.read()


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        fail(f"{source} is not valid JSON", EXIT_VALIDATION)
    if not isinstance(value, dict):
        fail(f"{source} must hold a JSON object", EXIT_VALIDATION)
    return value


def collect_data(ctx: click.Context, assignments: tuple[str, ...], json_file: str | None) -> dict[str, Any]:
    """The secret's data from --json-file, `-` (a JSON object on stdin) and KEY=VALUE|@FILE|- in order."""
    data: dict[str, Any] = {}
    if json_file is not None:
        text = _read_stdin_once(ctx) if json_file == "-" else _read_file(json_file)
        data.update(_json_object(text, "stdin" if json_file == "-" else json_file))
    for item in assignments:
        if item == "-":
            data.update(_json_object(_read_stdin_once(ctx), "stdin"))
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"expected KEY=VALUE, KEY=@FILE, KEY=- or -, got {item.split('=')[0]!r}", EXIT_VALIDATION)
        if value == "-":
            value = _read_stdin_once(ctx)
            value = value[:-1] if value.endswith("\n") else value
        elif value.startswith("@"):
            value = _read_file(value[1:])
        data[key] = value
    if not data:
        fail("nothing to write: give KEY=VALUE pairs, `-` or --json-file", EXIT_VALIDATION)
    return data


def _read_file(name: str) -> str:
    try:
        with open(name, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        fail(f"cannot read {name}: {exc.strerror}", 1)


@secrets_group.command("write", help="Write a new version: KEY=VALUE ..., KEY=@FILE, KEY=- (stdin), `-` "
                                     "(a JSON object on stdin) or --json-file FILE.")
@click.argument("path")
@click.argument("assignments", nargs=-1)
@click.option("--json-file", type=str, help="A JSON object with the secret's keys ('-' = stdin).")
@click.option("--type", "secret_type", type=click.Choice(["kv", "json", "certificate", "ssh_key", "api_key"]),
              help="Secret type (new secrets default to kv).")
@click.option("--expires-in", help="Expiry such as 30d or 12h.")
@click.option("--max-versions", type=click.IntRange(min=1), help="Versions to keep.")
@click.option("--cas", type=click.IntRange(min=0), help="Check-and-set: 0 = create only, N = only over version N.")
@click.option("--description", help="Metadata: description.")
@click.option("--tag", "tags", multiple=True, help="Metadata: a tag (repeatable).")
@click.option("--owner", help="Metadata: owner.")
@PARTNER
@json_option
@click.pass_context
def write(ctx: click.Context, path: str, assignments: tuple[str, ...], json_file: str | None,
          secret_type: str | None, expires_in: str | None, max_versions: int | None, cas: int | None,
          description: str | None, tags: tuple[str, ...], owner: str | None, partner: bool, as_json: bool) -> None:
    data = collect_data(ctx, assignments, json_file)
    metadata = {k: v for k, v in (("description", description), ("tags", list(tags) or None), ("owner", owner))
                if v is not None} or None
    info = sdk(ctx).secrets.write(path, data, secret_type=secret_type, metadata=metadata, max_versions=max_versions,
                                  expires_in=expires_in, cas=cas, partner=partner)
    respond(as_json, info, f"wrote {info.path} version {info.version}")


# ------------------------------------------------------------------ list
@secrets_group.command("list", help="List secrets: one level under --prefix (folders end in /), or every "
                                    "secret below it with --recursive.")
@click.option("--prefix", default="", help="Only paths under this prefix.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many secrets.")
@click.option("--recursive", "-r", is_flag=True, help="Every secret below the prefix, not just one level.")
@click.option("--tag", help="Only secrets with this tag.")
@PARTNER
@json_option
@click.pass_context
def list_secrets(ctx: click.Context, prefix: str, limit: int | None, recursive: bool, tag: str | None,
                 partner: bool, as_json: bool) -> None:
    client = sdk(ctx)
    if prefix and not recursive and not prefix.endswith("/"):
        prefix += "/"
    items: list[Any] = []
    folders: list[str] = []
    cursor = None
    while True:
        page = client.secrets.list_page(prefix, recursive=recursive, cursor=cursor, partner=partner, tag=tag,
                                        page_size=min(limit, 1000) if limit else None)
        items.extend(page.secrets)
        folders.extend(page.folders or [])
        cursor = page.cursor
        if not page.has_more or not cursor or (limit and len(items) >= limit):
            break
    items = items[:limit] if limit else items
    if as_json:
        out: dict[str, Any] = {"secrets": to_plain(items)}
        if not recursive:
            out["folders"] = folders
        print_json(out)
        return
    rows = [[f, "folder", "", "", ""] for f in folders]
    rows += [[s.path, s.secret_type, s.version, s.updated_at, s.expires_at] for s in items]
    print_table(["path", "type", "version", "updated", "expires"], rows, empty="(no secrets)")


@secrets_group.command("expiring", help="Secrets expiring within --days days (already expired ones included).")
@click.option("--days", type=click.IntRange(min=1), required=True, help="Window in days.")
@click.option("--prefix", default="", help="Only paths under this prefix.")
@json_option
@click.pass_context
def expiring(ctx: click.Context, days: int, prefix: str, as_json: bool) -> None:
    items = list(sdk(ctx).secrets.expiring(days, prefix=prefix))
    if as_json:
        print_json({"secrets": items, "days": days})
        return
    print_table(["path", "expires", "version", "type"], [[s.path, s.expires_at, s.version, s.secret_type]
                                                         for s in sorted(items, key=lambda s: s.expires_at or "")],
                empty=f"(nothing expires within {days} days)")


# ------------------------------------------------------------------ lifecycle
@secrets_group.command("delete", help="Delete a secret (restorable until its retention ends), or destroy every "
                                      "version for good with --hard.")
@click.argument("path")
@click.option("--hard", is_flag=True, help="Destroy every version now; cannot be restored.")
@PARTNER
@json_option
@click.pass_context
def delete(ctx: click.Context, path: str, hard: bool, partner: bool, as_json: bool) -> None:
    result = sdk(ctx).secrets.delete(path, permanent=hard, partner=partner)
    if as_json:
        print_json(result)
    elif result.permanent:
        click.echo(f"destroyed {result.path} ({result.version_count} version(s))")
    else:
        click.echo(f"deleted {result.path}; restorable until {result.recoverable_until}")


@secrets_group.command("restore", help="Restore a soft-deleted secret.")
@click.argument("path")
@PARTNER
@json_option
@click.pass_context
def restore(ctx: click.Context, path: str, partner: bool, as_json: bool) -> None:
    info = sdk(ctx).secrets.restore(path, partner=partner)
    respond(as_json, info, f"restored {info.path} at version {info.version}")


@secrets_group.command("rotate", help="Rotate a secret now through its attached rotation policy.")
@click.argument("path")
@json_option
@click.pass_context
def rotate(ctx: click.Context, path: str, as_json: bool) -> None:
    item = sdk(ctx).secrets.rotate(path)
    if as_json:
        print_json(item)
    elif item.get("status") == "pending":
        click.echo(f"rotation of {path} is due: the policy waits for a new version to be written")
    else:
        click.echo(f"rotated {path}: {item.get('status')}"
                   + (f", version {item['new_version']}" if item.get("new_version") else ""))


@secrets_group.command("destroy", help="Erase the given versions' values for good (reads then answer 410).")
@click.argument("path")
@click.option("--version", "versions", type=click.IntRange(min=1), multiple=True, required=True,
              help="A version to destroy (repeatable).")
@json_option
@click.pass_context
def destroy(ctx: click.Context, path: str, versions: tuple[int, ...], as_json: bool) -> None:
    result = sdk(ctx).secrets.destroy(path, list(versions))
    if as_json:
        print_json(result)
    else:
        click.echo(f"destroyed {result.path} version(s) {cell_list(result.destroyed)}"
                   + (f"; already destroyed: {cell_list(result.already_destroyed)}" if result.already_destroyed else ""))


def cell_list(values: list[int]) -> str:
    return ",".join(str(v) for v in values) or "-"


@secrets_group.command("versions", help="The versions of a secret, newest first.")
@click.argument("path")
@PARTNER
@json_option
@click.pass_context
def versions(ctx: click.Context, path: str, partner: bool, as_json: bool) -> None:
    listing = sdk(ctx).secrets.versions(path, partner=partner)
    if as_json:
        print_json(listing)
        return
    print_table(["version", "state", "current", "created", "created by", "bytes"],
                [[v.version, v.state, v.current, v.created_at, v.created_by, v.size_bytes] for v in listing.versions])


@secrets_group.command("metadata", help="Show a secret's metadata (never its value); with --description, --tag, "
                                        "--owner, --set, --max-versions or --expires-in, change it first.")
@click.argument("path")
@click.option("--description", help="Set the description.")
@click.option("--tag", "tags", multiple=True, help="Replace the tags (repeatable).")
@click.option("--owner", help="Set the owner.")
@click.option("--set", "custom", multiple=True, metavar="KEY=VALUE", help="Set a custom metadata key (repeatable; "
              "KEY= removes it).")
@click.option("--max-versions", type=click.IntRange(min=1), help="Versions to keep.")
@click.option("--expires-in", help="New expiry such as 30d.")
@PARTNER
@json_option
@click.pass_context
def metadata(ctx: click.Context, path: str, description: str | None, tags: tuple[str, ...], owner: str | None,
             custom: tuple[str, ...], max_versions: int | None, expires_in: str | None, partner: bool,
             as_json: bool) -> None:
    client = sdk(ctx)
    patch: dict[str, Any] = {k: v for k, v in (("description", description), ("owner", owner)) if v is not None}
    if tags:
        patch["tags"] = list(tags)
    for item in custom:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set expects KEY=VALUE, got {item!r}", EXIT_VALIDATION)
        patch[key] = value or None
    if patch or max_versions or expires_in:
        client.secrets.update_metadata(path, patch or None, max_versions=max_versions, expires_in=expires_in,
                                       partner=partner)
    detail = client.secrets.read_metadata(path, partner=partner)
    if as_json:
        print_json(detail)
        return
    print_fields([("path", detail.path), ("type", detail.secret_type), ("version", detail.version),
                  ("versions", detail.version_count), ("created", detail.created_at), ("updated", detail.updated_at),
                  ("expires", detail.expires_at), ("max versions", detail.max_versions),
                  ("rotation policy", detail.rotation_policy_id), ("deleted", detail.deleted),
                  *[(f"metadata.{k}", v) for k, v in sorted(to_plain(detail.metadata).items())]])
