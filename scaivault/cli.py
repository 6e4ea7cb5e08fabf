"""`scaivault` command line: serve | migrate | dev (more commands register themselves below).

Only the standard library is imported at module level: `serve` and `dev` must let gevent
patch sockets, ssl and threads before anything else imports them.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="scaivault", description="ScaiVault secrets manager")
    parser.add_argument("--version", action="version", version=f"scaivault {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API under gunicorn with gevent workers")
    serve.add_argument("--no-migrate", action="store_true", help="refuse to start if migrations are pending")
    serve.set_defaults(func=cmd_serve)
    migrate = sub.add_parser("migrate", help="apply pending database migrations and exit")
    migrate.set_defaults(func=cmd_migrate)
    health = sub.add_parser("healthcheck", help="probe this host's /v1/health (for container HEALTHCHECKs)")
    health.add_argument("--timeout", type=float, default=3.0)
    health.set_defaults(func=cmd_healthcheck)
    dev = sub.add_parser("dev", help="run everything on this machine (embedded PostgreSQL, local KMS)")
    dev.add_argument("--data-dir", default="./.scaivault-dev",
                     help="embedded database, key file and state (kept between runs)")
    dev.add_argument("--bind", default="127.0.0.1:8200", help="HOST:PORT to listen on (plain HTTP)")
    dev.set_defaults(func=cmd_dev)
    keys = sub.add_parser("keys", help="key hierarchy: status and rotation")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="re-wrap partner keys under the configured KMS key (resumable), "
                                                "or rotate one tenant's key with --tenant")
    rotate.add_argument("--partner", help="partner id (with --tenant, or alone for the partner's own key)")
    rotate.add_argument("--tenant", help="tenant id: rotate this tenant's key instead of the root")
    keys_status = keys_sub.add_parser("status", help="print key versions and rotations as JSON (never material)")
    keys_status.add_argument("--partner", help="only this partner's keys")
    keys.set_defaults(func=cmd_keys)
    identity = sub.add_parser("identity", help="identity cache: sync from ScaiKey now")
    identity_sub = identity.add_subparsers(dest="identity_command", required=True)
    identity_sync = identity_sub.add_parser("sync", help="run one full (or partner/tenant) sync and print it as JSON")
    identity_sync.add_argument("--partner", help="only this partner")
    identity_sync.add_argument("--tenant", help="only this tenant")
    identity.set_defaults(func=cmd_identity)
    return parser


def main(argv: list[str] | None = None, env: dict | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["serve"], ["dev"]):
        # gevent must patch the standard library before ssl, sockets or threads are imported
        from gevent import monkey

        monkey.patch_all()
    from .config import ConfigError
    from .errors import ScaiVaultError
    from .migrate import MigrationError

    args = build_parser().parse_args(argv)
    env = dict(os.environ) if env is None else env
    try:
        return args.func(args, env) or 0
    except ConfigError as exc:
        _fail(EXIT_CONFIG, f"configuration error: {exc.variable}: {exc.problem}")
    except MigrationError as exc:
        _fail(EXIT_SCHEMA, f"refusing to start: {exc}")
    except ScaiVaultError as exc:
        _fail(EXIT_FAILURE, f"cannot start: {exc.message}")


if __name__ == "__main__":
    sys.exit(main())
