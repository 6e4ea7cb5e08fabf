"""GET /v1/metrics (Prometheus exposition) and the per-request metrics hooks.

Request metrics are recorded here once for every endpoint: the `path_category` label is the
view's rate-limit category (bounded), `probe` for health/version/metrics, `unmatched` when no
route matched. Scrapes are not audited and not rate limited; METRICS_TOKEN, when set,
requires `Authorization: Bearer <METRICS_TOKEN>`. Without a token, metrics (tenant ids,
per-tenant activity) are served only over loopback or on METRICS_BIND_ADDRESS, a second
listener that serves nothing but metrics and health probes (issue 9 F15).
"""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, Flask, Response, current_app, g, request

from .. import metrics
from ..errors import ScaiVaultError
from ..inputs import is_ascii_digits
from .http import current_request, runtime
from .pipeline import endpoint

bp = Blueprint("metrics", __name__)


@bp.get("/v1/metrics")
@endpoint(None, authenticated=False, produces=("text/plain",))
def scrape():
    """Prometheus text exposition of every ScaiVault series."""
    settings = runtime().settings
    token = settings.metrics_token
    if token:
        supplied = request.headers.get("Authorization", "")
        expected = "Bearer " + token
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise ScaiVaultError("authentication_required", "a valid metrics bearer token is required",
                                 headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    elif not (on_metrics_listener(settings.metrics_bind_address) or _over_loopback()):
        raise ScaiVaultError("forbidden", "metrics are served over loopback or on METRICS_BIND_ADDRESS only "
                             "(or anywhere with METRICS_TOKEN)")
    _sample_pool_gauges()
    body, content_type = metrics.exposition()
    return Response(body, status=200, content_type=content_type)


def _local_address() -> tuple[str, int] | None:
    """(host, port) of the listener this request came in on."""
    # gunicorn's own workers name the connection gunicorn.socket, its pywsgi handler gunicorn.sock
    environ = current_request().environ
    sock = environ.get("gunicorn.socket") or environ.get("gunicorn.sock")
    if sock is not None:
        try:
            host, port = sock.getsockname()[:2]
            return str(host), int(port)
        except (OSError, TypeError, ValueError):
            return None
    port = environ.get("SERVER_PORT", "")
    return (environ.get("SERVER_NAME", ""), int(port)) if is_ascii_digits(str(port), 5) else None


def on_metrics_listener(metrics_bind_address: str | None) -> bool:
    """True when the request arrived on the METRICS_BIND_ADDRESS listener."""
    if not metrics_bind_address:
        return False
    local = _local_address()
    host, _, port = metrics_bind_address.rpartition(":")
    host = host.strip("[]")
    return local is not None and local[1] == int(port) and (host in ("0.0.0.0", "::", "*") or local[0] == host)


def _over_loopback() -> bool:
    """The TCP peer is this host and no proxy forwarded the request on someone else's behalf."""
    import ipaddress

    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    peer = request.environ.get("scaivault.proxy_addr") or request.environ.get("REMOTE_ADDR") or ""
    try:
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


@bp.before_app_request
def _metrics_listener_serves_metrics_only():
    bind = runtime().settings.metrics_bind_address
    if not bind or current_request().endpoint in ("metrics.scrape", "health.liveness", "health.readiness") or \
            not on_metrics_listener(bind):
        return None
    raise ScaiVaultError("not_found", "this listener (METRICS_BIND_ADDRESS) serves /v1/metrics and health probes only")


def _sample_pool_gauges() -> None:
    rt = runtime()
    if "db" not in rt.__dict__:
        return
    stats = rt.db.pool().stats
    metrics.DB_POOL_SIZE.set(stats["pool_size"])
    metrics.DB_POOL_AVAILABLE.set(stats["pool_available"])
    from ..lifecycle.gauges import sample_queue_depths

    sample_queue_depths(rt)


def path_category() -> str:
    """The bounded label of the current request: its endpoint's rate category."""
    view = current_app.view_functions.get(current_request().endpoint or "")
    if view is None:
        return "unmatched"
    return getattr(view, "rate_category", None) or "probe"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method() -> str:
    method = current_request().method
    return method if method in _METHODS else "OTHER"


def install_request_metrics(app: Flask) -> None:
    """Count and time every request in one place (before/after/teardown hooks).

    Labelled children are looked up once per label combination (`labels()` costs more than the
    increment); pool gauges are sampled at scrape time only, not on every request.
    """
    active: dict[str, object] = {}
    counted: dict[tuple[str, str, int], object] = {}
    timed: dict[tuple[str, str], object] = {}

    def active_gauge(category: str):
        child = active.get(category)
        if child is None:
            child = active[category] = metrics.ACTIVE_REQUESTS.labels(path_category=category)
        return child

    @app.before_request
    def _metrics_start():
        category, state = path_category(), g._get_current_object()
        state.metrics_category = category
        state.metrics_started = time.perf_counter()
        active_gauge(category).inc()

    @app.after_request
    def _metrics_finish(response: Response) -> Response:
        # requests refused by an earlier before_request hook (413, malformed tenant) count too
        state = g._get_current_object()
        category = state.get("metrics_category") or path_category()
        started = state.get("metrics_started") or state.get("started")
        if started is not None:
            elapsed = time.perf_counter() - started
            method, status = _method(), response.status_code
            counter = counted.get((method, category, status))
            if counter is None:
                counter = counted[(method, category, status)] = metrics.REQUESTS.labels(
                    method=method, path_category=category, status=str(status))
            histogram = timed.get((method, category))
            if histogram is None:
                histogram = timed[(method, category)] = metrics.REQUEST_DURATION.labels(
                    method=method, path_category=category)
            counter.inc()
            histogram.observe(elapsed)
        return response

    @app.teardown_request
    def _metrics_teardown(_exc=None):
        category = g.pop("metrics_category", None)
        if category is not None:
            active_gauge(category).dec()
