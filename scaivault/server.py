"""gunicorn with gevent workers, created programmatically (no shell wrapper)."""
from __future__ import annotations

import ssl

from gunicorn.app.base import BaseApplication

from .config import Settings

GRACEFUL_TIMEOUT_SECONDS = 30


class ScaiVaultServer(BaseApplication):
    """A gunicorn application whose configuration comes from Settings, not from argv."""

    def __init__(self, settings: Settings, extra: dict | None = None):
        self.settings = settings
        self.extra = extra or {}
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": [s.bind_address],
            "workers": s.web_concurrency,
            "worker_class": "gevent",
            "worker_connections": 1000,
            "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
            "timeout": 60,
            "keepalive": 5,
            "accesslog": None,           # ScaiVault writes its own access line
            "errorlog": "-",
            "loglevel": "warning" if s.log_level in ("info", "warn", "warning") else s.log_level,
            "proc_name": "scaivault",
            "control_socket_disable": True,
        }
        if s.tls_cert_file:
            options.update(certfile=s.tls_cert_file, keyfile=s.tls_key_file)
            if s.tls_client_ca_file:
                options.update(ca_certs=s.tls_client_ca_file, cert_reqs=ssl.CERT_REQUIRED)
        options.update(self.extra)
        for key, value in options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        from .app import create_app

        return create_app(self.settings)


def run_server(settings: Settings, **extra) -> None:
    ScaiVaultServer(settings, extra).run()
