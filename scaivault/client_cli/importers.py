"""`scaivault import vault|aws-sm|dotenv`: migrate secrets into a running ScaiVault (spec/50 4).

Idempotent (a rerun writes nothing when nothing changed), `--dry-run` lists paths and counts only,
a summary at the end (`--json` for machines) and a progress bar on stderr when it is a terminal.
Source credentials stay off the command line: `--token -` / `--token @FILE`, VAULT_TOKEN,
~/.vault-token, or the standard AWS credential chain.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator

import click

from . import ClientGroup, env, sdk
from .output import EXIT_NOT_FOUND, EXIT_VALIDATION, fail, json_option, print_json
from .secrets import _read_file, _read_stdin_once

TRUTHY = {"1", "true", "yes"}


@click.group("import", cls=ClientGroup, help="Import secrets from HashiCorp Vault / OpenBao (KV v2), AWS Secrets "
                                             "Manager or a .env file; reruns are no-ops.")
def import_group() -> None:
    pass


def common_options(func: Callable) -> Callable:
    func = json_option(func)
    func = click.option("--overwrite", is_flag=True,
                        help="Replace secrets that changed in ScaiVault since the import, or that exist there "
                             "with another value (default: skip them).")(func)
    return click.option("--dry-run", is_flag=True,
                        help="List what would be written (paths and counts, never values); write nothing.")(func)


@contextlib.contextmanager
def source_errors() -> Iterator[None]:
    from scaivault.importers import SourceError

    try:
        yield
    except SourceError as exc:
        fail(str(exc), exc.exit_code)


def secret_option(ctx: click.Context, value: str | None) -> str | None:
    """`-` reads stdin, `@FILE` reads a file (one trailing newline dropped); anything else is the value."""
    if value == "-":
        value = _read_stdin_once(ctx)
    elif value is not None and value.startswith("@"):
        value = _read_file(value[1:])
    return value.rstrip("\r\n") if value is not None else None


# ------------------------------------------------------------------ vault
@import_group.command("vault", help="Import a KV v2 subtree of HashiCorp Vault / OpenBao with every readable "
                                    "version (oldest first) and custom_metadata.")
@click.option("--addr", help="Vault address (default: VAULT_ADDR).")
@click.option("--token", help="Vault token: `-` reads stdin, `@FILE` a file (default: VAULT_TOKEN, then "
                              "~/.vault-token).")
@click.option("--mount", default="secret", show_default=True, help="The KV v2 mount.")
@click.option("--prefix", default="", help="Folder to import, recursively (a secret's own path imports just it).")
@click.option("--to", help="ScaiVault prefix that replaces --prefix (default: the Vault path without the mount).")
@click.option("--namespace", help="Vault namespace (default: VAULT_NAMESPACE).")
@common_options
@click.pass_context
def import_vault(ctx: click.Context, addr: str | None, token: str | None, mount: str, prefix: str, to: str | None,
                 namespace: str | None, dry_run: bool, overwrite: bool, as_json: bool) -> None:
    from scaivault.importers.vault import VaultSource

    variables = env(ctx)
    addr = addr or variables.get("VAULT_ADDR")
    if not addr:
        fail("no Vault address: pass --addr or set VAULT_ADDR", EXIT_VALIDATION)
    if token is not None and token != "-" and not token.startswith("@"):
        click.echo("scaivault: warning: a token on the command line is visible in the process list and shell "
                   "history; prefer --token - (stdin), --token @FILE or VAULT_TOKEN", err=True)
    token = secret_option(ctx, token) or variables.get("VAULT_TOKEN") or _vault_token_file(variables)
    if not token:
        fail("no Vault token: --token - (stdin), --token @FILE, VAULT_TOKEN or ~/.vault-token", 2)
    verify: Any = variables.get("VAULT_CACERT") or variables.get("VAULT_SKIP_VERIFY", "").lower() not in TRUTHY
    client = sdk(ctx)
    with source_errors():
        source = VaultSource(addr, token, mount, namespace=namespace or variables.get("VAULT_NAMESPACE"),
                             verify=verify)
        entries = source.entries(prefix, _destination_prefix(to))
        if not entries:
            fail(f"no secrets under {mount}/{prefix.strip('/')} (is {mount} a KV v2 mount?)", EXIT_NOT_FOUND)
        run_import(client, entries, dry_run, overwrite, as_json)


def _vault_token_file(variables: dict[str, str]) -> str | None:
    home = variables.get("HOME") or os.path.expanduser("~")
    try:
        with open(os.path.join(home, ".vault-token"), encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


# ------------------------------------------------------------------ aws
@import_group.command("aws-sm", help="Import AWS Secrets Manager secrets (AWSPREVIOUS then AWSCURRENT) with their "
                                     "description and tags, using the standard AWS credential chain.")
@click.option("--region", help="AWS region (default: AWS_REGION, then AWS_DEFAULT_REGION).")
@click.option("--prefix", default="", help="Only secrets whose name starts with this.")
@click.option("--to", help="ScaiVault prefix that replaces --prefix (default: the secret's name).")
@click.option("--profile", help="AWS profile (default: AWS_PROFILE / the default chain).")
@click.option("--endpoint-url", help="Another endpoint (a VPC endpoint, or a local stand-in such as moto).")
@common_options
@click.pass_context
def import_aws(ctx: click.Context, region: str | None, prefix: str, to: str | None, profile: str | None,
               endpoint_url: str | None, dry_run: bool, overwrite: bool, as_json: bool) -> None:
    from scaivault.importers.aws_sm import AwsSecretsManagerSource

    variables = env(ctx)
    region = region or variables.get("AWS_REGION") or variables.get("AWS_DEFAULT_REGION")
    if not region:
        fail("no AWS region: pass --region or set AWS_REGION", EXIT_VALIDATION)
    client = sdk(ctx)
    with source_errors():
        source = AwsSecretsManagerSource(region, endpoint_url=endpoint_url, profile=profile)
        entries = source.entries(prefix, _destination_prefix(to))
        if not entries:
            fail(f"no secrets in {region}" + (f" whose name starts with {prefix}" if prefix else ""), EXIT_NOT_FOUND)
        run_import(client, entries, dry_run, overwrite, as_json)


# ------------------------------------------------------------------ dotenv
@import_group.command("dotenv", help="Import a .env file: one secret at --path holding every variable, or one "
                                     "secret per variable at PATH/KEY with --split.")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--path", "path", required=True, help="ScaiVault path of the secret (the prefix with --split).")
@click.option("--split", is_flag=True, help='One secret per variable at PATH/KEY holding {"value": ...}.')
@common_options
@click.pass_context
def import_dotenv(ctx: click.Context, file: str, path: str, split: bool, dry_run: bool, overwrite: bool,
                  as_json: bool) -> None:
    from scaivault.importers import dotenv_file

    if not path.strip("/"):
        fail("--path must name a ScaiVault path", EXIT_VALIDATION)
    text = _read_stdin_once(ctx) if file == "-" else _read_file(file)
    client = sdk(ctx)
    with source_errors():
        entries, warnings = dotenv_file.entries("stdin" if file == "-" else file, text, path, split)
        for warning in warnings:
            click.echo(f"scaivault: warning: {warning}", err=True)
        run_import(client, entries, dry_run, overwrite, as_json)


# ------------------------------------------------------------------ shared
def _destination_prefix(to: str | None) -> str | None:
    if to is not None and not to.strip("/"):
        fail("--to must name a ScaiVault path prefix", EXIT_VALIDATION)
    return to


def run_import(client: Any, entries: list, dry_run: bool, overwrite: bool, as_json: bool) -> None:
    """Import, print the per-path lines and the summary, exit 1 when any secret failed."""
    from scaivault.importers import Importer

    importer = Importer(client, dry_run=dry_run, overwrite=overwrite, on_wait=_rate_limited)
    if entries and sys.stderr.isatty():
        with click.progressbar(length=len(entries), label="importing", file=sys.stderr) as bar:
            summary = importer.run(entries, advance=lambda: bar.update(1))
    else:
        summary = importer.run(entries)
    if as_json:
        print_json(summary.as_dict())
    else:
        report(summary)
    if summary.count("failed"):
        raise click.exceptions.Exit(1)


def _rate_limited(seconds: float) -> None:
    newline = "\n" if sys.stderr.isatty() else ""       # below the progress bar
    click.echo(f"{newline}scaivault: rate limited by ScaiVault; waiting {seconds:.1f} s", err=True)


def report(summary: Any) -> None:
    would = "would " if summary.dry_run else ""
    write = "would write" if summary.dry_run else "written"
    for outcome in summary.outcomes:
        if outcome.status == "written" and outcome.detail == "metadata":
            click.echo(f"{would}update metadata of {outcome.path}")
        elif outcome.status == "written":
            click.echo(f"{'would write' if summary.dry_run else 'wrote'} {outcome.path} "
                       f"({outcome.versions} version{'s' if outcome.versions != 1 else ''}, {outcome.detail})")
        elif outcome.status in ("skipped", "failed"):
            click.echo(f"{outcome.status} {outcome.path}: {outcome.detail}")
    counts = summary.as_dict()
    click.echo(f"{'dry run: ' if summary.dry_run else ''}{counts['total']} secret(s): "
               f"{write} {counts['written']} ({counts['versions_written']} version(s)), "
               f"unchanged {counts['unchanged']}, skipped {counts['skipped']}, failed {counts['failed']}")
