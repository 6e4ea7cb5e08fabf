"""`scaivault` command line: the server subcommands (serve, migrate, dev, keys, identity, healthcheck)
and the client groups of scaivault.client_cli (config, auth, secrets, policies, tokens, audit).

Only the standard library and click are imported at module level: `serve` and `dev` must let gevent
patch sockets, ssl and threads before anything else imports them.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

import click

EXIT_FAILURE = 1        # a dependency (database) unreachable, or another start-up failure
EXIT_CONFIG = 2         # a configuration variable is missing or malformed
EXIT_SCHEMA = 3         # the schema is ahead of the code, changed, or has pending migrations


def _fail(code: int, message: str) -> NoReturn:
    sys.stderr.write(f"scaivault: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def prepare_database(settings, *, migrate: bool) -> None:
    """Bring the schema to this release (or refuse), then run the first-boot steps."""
    from .bootstrap import first_boot
    from .migrate import MigrationError, MigrationRunner
    from .runtime import Runtime

    runner = MigrationRunner(settings.database_url)
    state = runner.state()
    if state.problem:
        raise MigrationError(state.problem)
    if state.pending:
        if not migrate:
            first = state.pending[0]
            raise MigrationError(
                f"{len(state.pending)} migration(s) pending (first: {first.version:04d}_{first.name}); "
                f"run `scaivault migrate` first (this start has --no-migrate or MIGRATE_ON_START=false)")
        runner.apply()
    runtime = Runtime(settings)
    try:
        first_boot(runtime)
    finally:
        runtime.close()


def cmd_migrate(args, env) -> int:
    from .config import load_settings
    from .logging_setup import configure_logging
    from .migrate import MigrationRunner

    settings = load_settings(env, require_services=False)
    configure_logging(settings.log_level, settings.log_format)
    applied = MigrationRunner(settings.database_url).apply()
    sys.stdout.write(f"applied {len(applied)} migration(s)\n")
    return 0


def cmd_serve(args, env) -> int:
    from .config import load_settings
    from .logging_setup import configure_logging
    from .server import prepare_metrics_directory, run_server

    settings = load_settings(env)
    configure_logging(settings.log_level, settings.log_format)
    prepare_metrics_directory(settings)   # before anything imports prometheus_client
    # migrations and first boot run once here, in the master, before gunicorn forks workers
    prepare_database(settings, migrate=settings.migrate_on_start and not args.no_migrate)
    run_server(settings)
    return 0


def cmd_healthcheck(args, env) -> int:
    """Exit 0 when this host's /v1/health answers 200 (the container HEALTHCHECK)."""
    import socket
    import ssl
    import urllib.request

    from .config import load_settings

    settings = load_settings(env)
    port = int(settings.bind_address.rpartition(":")[2])
    try:
        if settings.tls_client_ca_file:
            # mTLS: without a client certificate the probe cannot talk HTTP; a TCP accept must do
            socket.create_connection(("127.0.0.1", port), timeout=args.timeout).close()
            return 0
        scheme, context = "http", None
        if settings.tls_cert_file:
            # the certificate names the public host, not 127.0.0.1; this is a local liveness probe
            scheme, context = "https", ssl._create_unverified_context()
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/v1/health", timeout=args.timeout,
                                    context=context) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        sys.stderr.write(f"scaivault: health check failed: {type(exc).__name__}\n")
        return 1


def cmd_dev(args, env) -> int:
    from .devmode import run_dev

    return run_dev(args, env)


def cmd_keys(args, env) -> int:
    from .config import load_settings
    from .crypto.cli import run_keys_command

    return run_keys_command(args, load_settings(env, require_services=False))


def cmd_identity(args, env) -> int:
    from .config import load_settings
    from .identity.cli import run_identity_command

    return run_identity_command(args, load_settings(env))


SERVER_EXTRA_HINT = "the server commands need the server extra: pip install 'scaivault[server]'"


class ServerCommand(click.Command):
    """A server subcommand: its modules are imported when it runs, and their absence names the extra."""

    def invoke(self, ctx: click.Context):
        from .errors import ScaiVaultError   # no third-party imports: safe on a client-only install

        try:
            return _run_server_command(super().invoke, ctx)
        except ScaiVaultError as exc:
            _fail(EXIT_FAILURE, f"cannot start: {exc.message}")


def _run_server_command(invoke, ctx: click.Context):
    try:
        from .config import ConfigError
        from .migrate import MigrationError
    except ModuleNotFoundError as exc:
        _fail(EXIT_FAILURE, f"{SERVER_EXTRA_HINT} (missing module {exc.name})")
    try:
        return invoke(ctx)
    except ConfigError as exc:
        _fail(EXIT_CONFIG, f"configuration error: {exc.variable}: {exc.problem}")
    except MigrationError as exc:
        _fail(EXIT_SCHEMA, f"refusing to start: {exc}")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("scaivault", "plugins"):
            raise
        _fail(EXIT_FAILURE, f"{SERVER_EXTRA_HINT} (missing module {exc.name})")


def _server(func, **fields):
    """Call one of the cmd_* functions above with an argparse-like namespace, as before click."""
    ctx = click.get_current_context()
    return func(argparse.Namespace(**fields), ctx.obj["env"]) or 0


def build_cli() -> click.Group:
    """The whole `scaivault` tree: server subcommands here, client groups from scaivault.client_cli."""
    from . import __version__
    from .client_cli import register_client_commands

    @click.group(context_settings={"help_option_names": ["-h", "--help"]},
                 help="ScaiVault secrets manager: run the server, or talk to one.")
    @click.version_option(__version__, "--version", prog_name="scaivault", message="%(prog)s %(version)s")
    def cli() -> None:
        pass

    @cli.command(cls=ServerCommand, help="Run the API under gunicorn with gevent workers.")
    @click.option("--no-migrate", is_flag=True, help="Refuse to start if migrations are pending.")
    def serve(no_migrate: bool) -> int:
        return _server(cmd_serve, no_migrate=no_migrate)

    @cli.command(cls=ServerCommand, help="Apply pending database migrations and exit.")
    def migrate() -> int:
        return _server(cmd_migrate)

    @cli.command(cls=ServerCommand, help="Probe this host's /v1/health (for container HEALTHCHECKs).")
    @click.option("--timeout", type=float, default=3.0, show_default=True)
    def healthcheck(timeout: float) -> int:
        return _server(cmd_healthcheck, timeout=timeout)

    @cli.command(cls=ServerCommand, help="Run everything on this machine (embedded PostgreSQL, local KMS).")
    @click.option("--data-dir", default="./.scaivault-dev", show_default=True,
                  help="Embedded database, key file and state (kept between runs).")
    @click.option("--bind", default="127.0.0.1:8200", show_default=True, help="HOST:PORT to listen on (plain HTTP).")
    def dev(data_dir: str, bind: str) -> int:
        return _server(cmd_dev, data_dir=data_dir, bind=bind)

    @cli.group(help="Key hierarchy: status and rotation.")
    def keys() -> None:
        pass

    @keys.command("rotate", cls=ServerCommand, help="Re-wrap partner keys under the configured KMS key "
                                                    "(resumable), or rotate one tenant's key with --tenant.")
    @click.option("--partner", help="Partner id (with --tenant, or alone for the partner's own key).")
    @click.option("--tenant", help="Tenant id: rotate this tenant's key instead of the root.")
    def keys_rotate(partner: str | None, tenant: str | None) -> int:
        return _server(cmd_keys, keys_command="rotate", partner=partner, tenant=tenant)

    @keys.command("status", cls=ServerCommand, help="Print key versions and rotations as JSON (never material).")
    @click.option("--partner", help="Only this partner's keys.")
    def keys_status(partner: str | None) -> int:
        return _server(cmd_keys, keys_command="status", partner=partner)

    @cli.group(help="Identity cache: sync from ScaiKey now.")
    def identity() -> None:
        pass

    @identity.command("sync", cls=ServerCommand, help="Run one full (or partner/tenant) sync and print it as JSON.")
    @click.option("--partner", help="Only this partner.")
    @click.option("--tenant", help="Only this tenant.")
    def identity_sync(partner: str | None, tenant: str | None) -> int:
        return _server(cmd_identity, identity_command="sync", partner=partner, tenant=tenant)

    register_client_commands(cli)
    return cli


def main(argv: list[str] | None = None, env: dict | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["serve"], ["dev"]) and not {"-h", "--help"} & set(argv):
        # gevent must patch the standard library before ssl, sockets or threads are imported
        try:
            from gevent import monkey
        except ModuleNotFoundError:
            _fail(EXIT_FAILURE, f"{SERVER_EXTRA_HINT} (missing module gevent)")
        monkey.patch_all()
    env = dict(os.environ) if env is None else env
    cli = build_cli()
    try:
        result = cli.main(args=argv, prog_name="scaivault", standalone_mode=False, obj={"env": env})
    except click.UsageError as exc:
        exc.show()
        return usage_exit_code(exc)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        sys.stderr.write("scaivault: aborted\n")
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


def usage_exit_code(exc: click.UsageError) -> int:
    """2 as before for the server commands; 5 (validation) under the client commands, where 2 means authentication."""
    ctx = exc.ctx
    while ctx is not None:
        if getattr(ctx.command, "client_command", False):
            from .client_cli.output import EXIT_VALIDATION

            return EXIT_VALIDATION
        ctx = ctx.parent
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
