"""The secret read and write routes dispatched without Flask's request context (issue 10).

`GET` and `PUT /v1/secrets/{path}` (also under /v1/t/{tenant}/) are most of the traffic. For
exactly those method and path shapes, `HotRoutes` runs the request itself instead of handing it
to `Flask.wsgi_app`, and runs the same code Flask would: the app's before_request hooks (request
id, URL and body-size guards, metrics), the registered view, which is the @endpoint pipeline
(authenticate -> tenant -> rate limit -> scope -> authorise -> body -> view -> audit), the app's
error handlers, its after_request hooks (request id, rate-limit and cache headers, metrics, the
access line) and its teardown hooks, on the same Request and Response classes. What it leaves
out is Flask's own machinery around them: the request context (URL adapter bound to the host,
routing, session), signals and the per-hook sync checks. The pipeline's code reads the request
through `current_request()`, which answers with this module's request while it serves one.

Anything else (another method, a colon route, a path that is not a well-formed secret path,
partner secrets) falls through to Flask untouched, so odd requests get exactly Flask's answer.
BARE_HOT_ROUTES=false turns this off; tests/test_hot_routes.py compares both answers. The dispatch
sequence mirrors Flask.wsgi_app of the versions in FLASK_TESTED (design.md invariant 13): on another
Flask, every request goes through Flask itself and a warning says so.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable

from flask import Flask
from werkzeug.exceptions import InternalServerError

from .http import _hot_request

log = logging.getLogger("scaivault.app")

# a well-formed secret path (policy.paths grammar; its length and depth are still checked by the
# pipeline); `:` (custom methods), `//`, trailing `/` and anything non-ASCII go to Flask
_SECRET_PATH = re.compile(r"/v1/secrets/([a-z0-9_-]+(?:/[a-z0-9_-]+)*)")
_ENDPOINTS = {"GET": "secrets.read", "PUT": "secrets.write"}
FLASK_TESTED = ("3.0", "3.2")      # lowest version checked, first version not checked


def flask_is_tested() -> bool:
    """Is the installed Flask one whose dispatch sequence this module was checked against?"""
    from .. import patches

    if patches.installed_within("flask", *FLASK_TESTED):
        return True
    version = patches.installed_version("flask")
    log.warning("hot routes off: this Flask was not checked against them; every request goes through Flask",
                extra={"installed": version or "absent", "tested": f">={FLASK_TESTED[0]},<{FLASK_TESTED[1]}"})
    return False


class HotRoutes:
    """WSGI middleware: serves the hot secret routes itself, passes everything else to `wsgi_app`."""

    def __init__(self, app: Flask, wsgi_app: Callable):
        self.app = app
        self.wsgi_app = wsgi_app
        self._routes: dict[str, tuple[Any, Callable, str | None]] = {}
        for method, endpoint in _ENDPOINTS.items():
            rules = [r for r in app.url_map.iter_rules(endpoint) if method in (r.methods or ())]
            if len(rules) != 1 or rules[0].rule != "/v1/secrets/<path:path>":
                raise RuntimeError(f"hot route {endpoint} is not the one rule /v1/secrets/<path:path>")
            blueprint = endpoint.rpartition(".")[0] or None
            self._routes[method] = (rules[0], app.view_functions[endpoint], blueprint)
        self._error_handler: Callable[[BaseException], Any] = app.extensions["scaivault_error_handler"]
        self._flask_paths = self._other_routes(app)
        if any(app.url_value_preprocessors.get(name) for name in (None, "secrets")):
            raise RuntimeError("hot routes do not run url_value_preprocessors; serve them through Flask")

    @staticmethod
    def _other_routes(app: Flask) -> frozenset[str]:
        """Paths under /v1/secrets/ that another GET or PUT route of the app owns (Flask routes those).

        A rule with variables there, other than the colon routes, would make "which route answers"
        a question for werkzeug's matcher: refuse to start rather than guess.
        """
        owned = set()
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith("/v1/secrets/") or rule.endpoint in _ENDPOINTS.values():
                continue
            if not set(rule.methods or ()) & set(_ENDPOINTS):
                continue
            if rule.rule.startswith("/v1/secrets/<path:path>:"):      # custom methods: never a hot path
                continue
            if rule.arguments:
                raise RuntimeError(f"route {rule.rule} may overlap the hot secret routes; serve them through Flask")
            owned.add(rule.rule[len("/v1/secrets/"):])
        return frozenset(owned)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        route = self._routes.get(environ.get("REQUEST_METHOD", ""))
        if route is not None:
            match = _SECRET_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None and match.group(1) not in self._flask_paths:
                return self._serve(environ, start_response, route, match.group(1))
        return self.wsgi_app(environ, start_response)

    def _serve(self, environ: dict, start_response: Callable, route: tuple, path: str) -> Iterable[bytes]:
        app = self.app
        rule, view, blueprint = route
        app_ctx = app.app_context()
        app_ctx.push()
        request = app.request_class(environ)
        request.url_rule = rule
        request.view_args = view_args = {"path": path, "partner": False}
        token = _hot_request.set(request)
        try:
            try:
                response = self._respond(app, request, view, view_args, blueprint)
            except Exception as exc:       # an error handler or an after_request hook failed
                log.exception("exception on a hot route", extra={"path_category": rule.endpoint})
                response = self._finish(app, self._error_handler(InternalServerError(original_exception=exc)),
                                        blueprint, from_error_handler=True)
            return response(environ, start_response)
        finally:
            try:
                for name in (blueprint, None):
                    for func in reversed(app.teardown_request_funcs.get(name, ())):
                        func(None)
            finally:
                _hot_request.reset(token)
                app_ctx.pop()

    def _respond(self, app: Flask, request, view: Callable, view_args: dict, blueprint: str | None):
        try:
            rv = None
            for name in (None, blueprint):
                for func in app.before_request_funcs.get(name, ()):
                    rv = func()
                    if rv is not None:
                        break
                if rv is not None:
                    break
            if rv is None:
                rv = view(**view_args)
        except Exception as exc:
            rv = self._error_handler(exc)
        return self._finish(app, rv, blueprint)

    @staticmethod
    def _finish(app: Flask, rv, blueprint: str | None, *, from_error_handler: bool = False):
        response = app.make_response(rv)
        try:
            for name in (blueprint, None):
                for func in reversed(app.after_request_funcs.get(name, ())):
                    response = func(response)
        except Exception:
            if not from_error_handler:
                raise
            log.exception("request finalizing failed with an error while handling an error")
        return response
