"""gunicorn with gevent workers, created programmatically (no shell wrapper).

SIGTERM is a graceful shutdown: workers stop accepting, finish in-flight requests for up to
GRACEFUL_TIMEOUT_SECONDS, then exit. SIGINT (Ctrl-C) is gunicorn's quick shutdown.
"""
from __future__ import annotations

import logging
import ssl

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from .config import Settings

GRACEFUL_TIMEOUT_SECONDS = 30
WORKER_TIMEOUT_SECONDS = 60

log = logging.getLogger("scaivault.server")


class ServerLogger(GunicornLogger):
    """Sends gunicorn's own messages through ScaiVault's handler (same format, same level)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.error_log.handlers = []
        self.error_log.propagate = True
        self.error_log.setLevel(logging.getLogger().level)


class ScaiVaultServer(BaseApplication):
    """A gunicorn application whose configuration comes from Settings, not from argv."""

    def __init__(self, settings: Settings, extra: dict | None = None):
        self.settings = settings
        self.extra = extra or {}
        super().__init__()

    def options(self) -> dict:
        s = self.settings
        options = {
            "bind": [s.bind_address],
            "workers": s.web_concurrency,
            "worker_class": "gevent",
            "worker_connections": 1000,
            "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
            "timeout": WORKER_TIMEOUT_SECONDS,
            "keepalive": 5,
            "accesslog": None,           # ScaiVault writes its own access line per request
            "errorlog": "-",
            "logger_class": ServerLogger,
            "proc_name": "scaivault",
            "control_socket_disable": True,
            # forwarded headers are trusted only from a proxy on the same host
            "forwarded_allow_ips": "127.0.0.1,::1",
        }
        if s.tls_cert_file:
            options.update(certfile=s.tls_cert_file, keyfile=s.tls_key_file)
            if s.tls_client_ca_file:
                # mTLS: a client without a certificate signed by this CA fails the handshake
                options.update(ca_certs=s.tls_client_ca_file, cert_reqs=ssl.CERT_REQUIRED)
        options.update(self.extra)
        return options

    def load_config(self) -> None:
        for key, value in self.options().items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        from .app import create_app

        return create_app(self.settings)


def run_server(settings: Settings, **extra) -> None:
    """Serve until SIGTERM/SIGINT; returns (or raises SystemExit) when gunicorn stops."""
    scheme = "https" if settings.tls_cert_file else "http"
    log.info("starting", extra={"bind": f"{scheme}://{settings.bind_address}",
                                "workers": extra.get("workers", settings.web_concurrency),
                                "mtls": bool(settings.tls_client_ca_file)})
    ScaiVaultServer(settings, extra).run()
