"""GET /v1/metrics (Prometheus exposition) and the per-request metrics hooks.

Request metrics are recorded here once for every endpoint: the `path_category` label is the
view's rate-limit category (bounded), `probe` for health/version/metrics, `unmatched` when no
route matched. Scrapes are not audited and not rate limited; METRICS_TOKEN, when set,
requires `Authorization: Bearer <METRICS_TOKEN>`.
"""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, Flask, Response, current_app, g, request

from .. import metrics
from ..errors import ScaiVaultError
from .http import runtime
from .pipeline import endpoint

bp = Blueprint("metrics", __name__)


@bp.get("/v1/metrics")
@endpoint(None, authenticated=False)
def scrape():
    """Prometheus text exposition of every ScaiVault series."""
    token = runtime().settings.metrics_token
    if token:
        supplied = request.headers.get("Authorization", "")
        expected = "Bearer " + token
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise ScaiVaultError("authentication_required", "a valid metrics bearer token is required",
                                 headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    _sample_pool_gauges()
    body, content_type = metrics.exposition()
    return Response(body, status=200, content_type=content_type)


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
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return "unmatched"
    return getattr(view, "rate_category", None) or "probe"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method() -> str:
    method = request.method
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
        category = path_category()
        g.metrics_category = category
        g.metrics_started = time.perf_counter()
        active_gauge(category).inc()

    @app.after_request
    def _metrics_finish(response: Response) -> Response:
        # requests refused by an earlier before_request hook (413, malformed tenant) count too
        category = g.get("metrics_category") or path_category()
        started = g.get("metrics_started") or g.get("started")
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
