"""gunicorn with gevent workers, created programmatically (no shell wrapper).

SIGTERM is a graceful shutdown: workers stop accepting, finish in-flight requests for up to
GRACEFUL_TIMEOUT_SECONDS, then exit. SIGINT (Ctrl-C) is gunicorn's quick shutdown.
"""
from __future__ import annotations

import atexit
import gc
import logging
import os
import shutil
import ssl
import sys

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from . import patches, version_hints
from .config import Settings

GRACEFUL_TIMEOUT_SECONDS = 30
WORKER_TIMEOUT_SECONDS = 60

log = logging.getLogger("scaivault.server")


class ServerLogger(GunicornLogger):
    """Sends gunicorn's own messages through ScaiVault's handler (same format, same level)."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        # "gunicorn.error" carries every gunicorn message, errors or not; log them as "gunicorn"
        self.error_log = logging.getLogger("gunicorn")
        self.error_log.handlers = []
        self.error_log.propagate = True
        self.error_log.setLevel(logging.getLogger().level)


def prepare_metrics_directory(settings: Settings) -> str:
    """Point prometheus_client's multiprocess mode at an empty directory (before anything imports
    prometheus_client), so that a scrape of any worker reports the samples of all workers."""
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before the metrics directory was set; "
                    "/v1/metrics will show one worker only")
    directory = settings.metrics_dir
    if directory is None:
        from .metrics_dir import create_master_directory, remove_stale_directories

        remove_stale_directories()          # left by masters killed with -9
        directory = create_master_directory()
        master = os.getpid()
        # workers inherit atexit handlers; only the master removes the directory
        atexit.register(lambda: os.getpid() == master and shutil.rmtree(directory, ignore_errors=True))
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):  # samples of a previous run
            os.remove(os.path.join(directory, name))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _mark_worker_dead(server, worker) -> None:
    """gunicorn child_exit hook: drop the live gauges of a worker that exited."""
    from .metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


def _warm_up(worker) -> None:
    """Pool, JWKS and keys ready before this worker accepts (bounded by WORKER_WARMUP_TIMEOUT)."""
    from .warmup import warm_worker

    runtime = worker.wsgi.extensions["scaivault"]
    warm_worker(runtime, runtime.settings.worker_warmup_timeout, worker.wsgi.extensions.get("scaivault_rate_limits"),
                worker.wsgi)


def _post_worker_init(worker) -> None:
    """gunicorn post_worker_init hook: TLS handshake noise off, background jobs on."""
    patches.gunicorn_json_parser_errors()
    patches.gunicorn_one_send_responses()
    if worker.cfg.certfile:
        patches.gevent_quiet_tls_handshakes()
    _warm_up(worker)
    from .jobs.scheduler import start_in_worker

    start_in_worker(worker)
    # The app, its modules and caches built so far live as long as the worker: move them out of
    # the collector's reach, so that a full collection under load walks only request garbage
    # (part of the p99 tail; issue 10).
    gc.collect()
    gc.freeze()


class ScaiVaultServer(BaseApplication):
    """A gunicorn application whose configuration comes from Settings, not from argv."""

    def __init__(self, settings: Settings, extra: dict | None = None):
        self.settings = settings
        self.extra = extra or {}
        super().__init__()

    def options(self) -> dict:
        s = self.settings
        options = {
            "bind": [s.bind_address] + ([s.metrics_bind_address] if s.metrics_bind_address else []),
            "workers": s.web_concurrency,
            "worker_class": patches.server_worker_class(),
            "worker_connections": 1000,
            "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
            "timeout": WORKER_TIMEOUT_SECONDS,
            "keepalive": 5,
            "accesslog": None,           # ScaiVault writes its own access line per request
            "errorlog": "-",
            "logger_class": ServerLogger,
            "proc_name": "scaivault",
            "control_socket_disable": True,
            "child_exit": _mark_worker_dead,
            "post_worker_init": _post_worker_init,
            # X-Forwarded-Proto and friends count only from TRUSTED_PROXIES (or a local proxy)
            "forwarded_allow_ips": ",".join(str(n) for n in s.trusted_proxies) or "127.0.0.1,::1",
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
    version_hints.share_between_workers()     # before the workers fork: one table for all of them
    ScaiVaultServer(settings, extra).run()
