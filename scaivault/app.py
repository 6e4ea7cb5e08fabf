"""The Flask app factory: extensions, blueprints, the request envelope and error handling."""
from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import __version__, pagination
from .api.http import current_request, query_args
from .config import Settings
from .errors import STATUS_BY_CODE, ScaiVaultError
from .inputs import text_problem
from .logging_setup import configure_logging
from .runtime import Runtime

log = logging.getLogger("scaivault.app")
access_log = logging.getLogger("scaivault.access")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TENANT_PREFIX_RE = re.compile(r"^/v1/t/([^/]+)(/.*)$")
TENANT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_HTTP_CODES = {400: "invalid_request", 401: "authentication_required", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 429: "rate_limited"}


class TenantPrefixMiddleware:
    """Serves every route also under /v1/t/{tenant_id}/...: strips the prefix, keeps the tenant."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        m = TENANT_PREFIX_RE.match(environ.get("PATH_INFO", ""))
        if m:
            environ["scaivault.path_tenant"] = m.group(1)
            environ["PATH_INFO"] = "/v1" + m.group(2)
        return self.wsgi_app(environ, start_response)


def error_response(code: str, message: str, status: int | None = None, details: dict | None = None,
                   headers: dict | None = None) -> Response:
    """The spec/10 envelope: {"error": {code, message, details?, request_id}}."""
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    body["request_id"] = getattr(g, "request_id", None) or _new_request_id()
    response = jsonify({"error": body})
    response.status_code = status or STATUS_BY_CODE.get(code, 500)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def _refuse_unstorable_url_text() -> None:
    """One guard for every endpoint: no NUL or lone surrogate in the URL path or a query key or value."""
    request = current_request()
    problem = text_problem(request.path)
    if problem:
        raise ScaiVaultError("invalid_request", f"the URL path {problem}")
    for key, value in query_args(request).items(multi=True):
        if text_problem(key):
            raise ScaiVaultError("invalid_request", f"a query parameter name {text_problem(key)}")
        if text_problem(value):
            raise ScaiVaultError("invalid_request", f"the query parameter {key[:64]} {text_problem(value)}",
                                 details={"parameter": key[:64]})


def create_app(settings: Settings, runtime: Runtime | None = None) -> Flask:
    """Build the WSGI application for one process."""
    configure_logging(settings.log_level, settings.log_format)
    app = Flask("scaivault")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False     # `//` is a bad path (JSON 4xx), never werkzeug's HTML 308 redirect
    runtime = runtime or Runtime(settings)
    app.extensions["scaivault"] = runtime
    tenant_prefix = TenantPrefixMiddleware(app.wsgi_app)
    app.wsgi_app = tenant_prefix   # type: ignore[method-assign]
    if settings.trusted_proxies:
        from .proxy import TrustedProxyMiddleware

        app.wsgi_app = TrustedProxyMiddleware(app.wsgi_app, settings.trusted_proxies)

    def _options_response() -> Response:
        """Allow names the methods of the route this URL resolves to, not of every template it also fits:
        OPTIONS on `{path}:versions` or `/v1/policies/test` advertises their own methods (issue 16)."""
        rule = request.url_rule
        methods: set[str] = {"OPTIONS"}
        for other in app.url_map.iter_rules():
            if rule is not None and other.rule == rule.rule:
                methods |= set(other.methods or ())
        response = app.response_class()
        response.allow.update(sorted(methods))
        return response

    app.make_default_options_response = _options_response   # type: ignore[method-assign]

    @app.before_request
    def _start_request():
        request, state = current_request(), g._get_current_object()
        state.started = time.perf_counter()
        pagination.use_key_source(runtime.cursor_key)
        # the request id (audit entries, error envelopes, X-Request-ID) is always the server's own;
        # a client's well-formed X-Request-ID is kept apart, so it can never name an audit entry (F16)
        incoming = request.headers.get("X-Request-ID", "")
        state.request_id = _new_request_id()
        state.client_request_id = incoming if REQUEST_ID_RE.match(incoming) else None
        _refuse_unstorable_url_text()
        path_tenant = request.environ.get("scaivault.path_tenant")
        if path_tenant is not None and not TENANT_ID_RE.match(path_tenant):
            raise ScaiVaultError("invalid_request", "tenant id in the path is malformed")
        length = request.content_length
        if length is not None and length > settings.max_request_bytes:
            raise ScaiVaultError("payload_too_large",
                                 f"request body exceeds the limit of {settings.max_request_bytes} bytes")
        if length is None and "chunked" in request.environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # no Content-Length to check: read now (werkzeug stops at MAX_CONTENT_LENGTH), so
            # an endless body meets the limit here even on an endpoint that never reads it
            if len(request.get_data(cache=True)) >= settings.max_request_bytes:
                raise ScaiVaultError("payload_too_large",
                                     f"request body exceeds the limit of {settings.max_request_bytes} bytes")

    @app.after_request
    def _finish_request(response: Response) -> Response:
        state = g._get_current_object()
        response.headers["X-Request-ID"] = state.get("request_id") or _new_request_id()
        if state.get("client_request_id"):
            response.headers["X-Client-Request-ID"] = state.client_request_id
        response.headers.setdefault("Cache-Control", "no-store")
        if not access_log.isEnabledFor(logging.INFO):
            return response
        request = current_request()
        # one line per request, probes included; never headers, query strings or bodies,
        # which may carry tokens or secret values
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        identity = g.get("identity")
        access_log.info(
            "request",
            extra={"method": request.method, "path": request.path, "status": response.status_code,
                   "duration_ms": round(elapsed_ms, 2), "request_id": g.get("request_id"),
                   "client_request_id": g.get("client_request_id"),
                   "remote_addr": request.remote_addr,
                   "identity": getattr(identity, "identity_id", None)},
        )
        return response

    @app.errorhandler(ScaiVaultError)
    def _scaivault_error(exc: ScaiVaultError):
        return error_response(exc.code, exc.message, exc.status, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
        messages = {404: "no such endpoint", 405: f"method {current_request().method} not allowed on this endpoint",
                    413: f"request body exceeds the limit of {settings.max_request_bytes} bytes"}
        headers = {"Allow": ", ".join(exc.valid_methods)} if status == 405 and getattr(exc, "valid_methods", None) else None
        return error_response(code, messages.get(status, exc.name.lower()), status, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # The message may quote request data; log the type and traceback, answer generically.
        log.error("unhandled error", exc_info=exc, extra={"request_id": g.get("request_id")})
        return error_response("internal_error", "internal error; quote the request_id when reporting it", 500)

    def handle_error(exc: BaseException) -> Response:
        """The handler Flask picks for `exc` among the three above (the bare hot routes call this)."""
        if isinstance(exc, ScaiVaultError):
            return _scaivault_error(exc)
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        return _unexpected(exc)     # type: ignore[arg-type]

    app.extensions["scaivault_error_handler"] = handle_error

    from .api import register_blueprints
    from .api.metrics import install_request_metrics
    from .ratelimit import init_rate_limits

    init_rate_limits(app, settings)
    install_request_metrics(app)
    register_blueprints(app)
    app.config["SCAIVAULT_VERSION"] = __version__
    if settings.bare_hot_routes:
        from .api.hot_routes import HotRoutes, flask_is_tested

        if flask_is_tested():
            # inside the tenant prefix (its paths are served too) and the trusted-proxy rewrite
            tenant_prefix.wsgi_app = HotRoutes(app, tenant_prefix.wsgi_app)
    return app
