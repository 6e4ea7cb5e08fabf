"""`scaivault` command line: serve | migrate | dev (more commands register themselves below)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import ConfigError, Settings, load_settings
from .migrate import MigrationError, MigrationRunner

log = logging.getLogger("scaivault.cli")

EXIT_CONFIG = 2
EXIT_SCHEMA = 3


def _fail(code: int, message: str) -> "NoReturn":  # type: ignore[name-defined]
    sys.stderr.write(f"scaivault: {message}\n")
    sys.exit(code)


def prepare_database(settings: Settings, *, migrate: bool) -> None:
    """Bring the schema to this release (or refuse), then run the first-boot steps."""
    runner = MigrationRunner(settings.database_url)
    state = runner.state()
    if state.problem:
        raise MigrationError(state.problem)
    if state.pending:
        if not migrate:
            raise MigrationError(
                f"{len(state.pending)} migration(s) pending (first: {state.pending[0].version:04d}_"
                f"{state.pending[0].name}); run `scaivault migrate` first, or start without "
                f"--no-migrate / MIGRATE_ON_START=false")
        runner.apply()
    from .bootstrap import first_boot
    from .runtime import Runtime

    runtime = Runtime(settings)
    try:
        first_boot(runtime)
    finally:
        runtime.close()


def cmd_migrate(args, env) -> int:
    settings = load_settings(env, require_services=False)
    from .logging_setup import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    applied = MigrationRunner(settings.database_url).apply()
    sys.stdout.write(f"applied {len(applied)} migration(s)\n")
    return 0


def cmd_serve(args, env) -> int:
    settings = load_settings(env)
    from .logging_setup import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    prepare_database(settings, migrate=settings.migrate_on_start and not args.no_migrate)
    from .server import run_server

    run_server(settings)
    return 0


def cmd_dev(args, env) -> int:
    from .devmode import run_dev

    return run_dev(args, env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaivault", description="ScaiVault secrets manager")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API under gunicorn with gevent workers")
    serve.add_argument("--no-migrate", action="store_true", help="refuse to start if migrations are pending")
    serve.set_defaults(func=cmd_serve)
    migrate = sub.add_parser("migrate", help="apply pending database migrations and exit")
    migrate.set_defaults(func=cmd_migrate)
    dev = sub.add_parser("dev", help="run everything on this machine (embedded PostgreSQL, local KMS)")
    dev.add_argument("--data-dir", default="./.scaivault-dev")
    dev.add_argument("--bind", default="127.0.0.1:8200")
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None, env: dict | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["serve"], ["dev"]):
        # gevent must patch the standard library before ssl, sockets or threads are imported
        from gevent import monkey

        monkey.patch_all()
    args = build_parser().parse_args(argv)
    env = dict(os.environ) if env is None else env
    try:
        return args.func(args, env) or 0
    except ConfigError as exc:
        _fail(EXIT_CONFIG, f"configuration error: {exc.variable}: {exc.problem}")
    except MigrationError as exc:
        _fail(EXIT_SCHEMA, f"refusing to start: {exc}")


if __name__ == "__main__":
    sys.exit(main())
