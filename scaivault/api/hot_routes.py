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
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

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
            return self._send(response, environ, start_response)
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
    def _send(response, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Start `response`: a view's JSON answer as it stands (its headers are final, its body one
        piece), anything else (errors, Flask's make_response) through werkzeug."""
        if type(response) is LeanResponse:
            start_response(response.status, response.headers.to_wsgi_list())
            return [response.body]
        return response(environ, start_response)

    @staticmethod
    def _finish(app: Flask, rv, blueprint: str | None, *, from_error_handler: bool = False):
        response = LeanResponse.of(app, rv) or app.make_response(rv)
        try:
            for name in (blueprint, None):
                for func in reversed(app.after_request_funcs.get(name, ())):
                    response = func(response)
        except Exception:
            if not from_error_handler:
                raise
            log.exception("request finalizing failed with an error while handling an error")
        return response


class LeanHeaders:
    """What the after_request hooks do with a response's headers (set, setdefault) over a plain list in
    sending order, with werkzeug's rules: names match case-insensitively, a set replaces the first
    header of that name in place and drops the others, values are str without line breaks."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]):
        self._items = items

    def _find(self, name: str) -> int:
        low = name.lower()
        for i, (key, _) in enumerate(self._items):
            if key.lower() == low:
                return i
        return -1

    def __setitem__(self, name: str, value: Any) -> None:
        value = str(value)
        if "\n" in value or "\r" in value:
            raise ValueError("Header values must not contain newline characters.")
        i = self._find(name)
        if i < 0:
            self._items.append((name, value))
            return
        low = name.lower()
        self._items[i + 1:] = [kv for kv in self._items[i + 1:] if kv[0].lower() != low]
        self._items[i] = (name, value)

    def setdefault(self, name: str, default: Any) -> str:
        i = self._find(name)
        if i >= 0:
            return self._items[i][1]
        self[name] = default
        return str(default)

    def to_wsgi_list(self) -> list[tuple[str, str]]:
        return self._items


class LeanResponse:
    """A view's JSON answer (a dict, or a dict and a status) on a hot route, built as Flask's JSON
    provider would build it (the same bytes, Content-Type and Content-Length) without werkzeug's
    Response and Headers machinery; the after_request hooks see `status_code` and `headers`."""

    __slots__ = ("status_code", "headers", "body")

    def __init__(self, body: bytes, status_code: int, mimetype: str):
        self.body = body
        self.status_code = status_code
        self.headers = LeanHeaders([("Content-Type", mimetype), ("Content-Length", str(len(body)))])

    @property
    def status(self) -> str:
        return f"{self.status_code} {HTTP_STATUS_CODES.get(self.status_code, 'unknown').upper()}"

    @classmethod
    def of(cls, app: Flask, rv: Any) -> "LeanResponse | None":
        """The lean answer for `rv`, or None where Flask's make_response must decide (anything but a
        dict or a (dict, int) pair, or a JSON provider that is not compact: debug output is indented)."""
        status = 200
        if type(rv) is tuple and len(rv) == 2 and type(rv[1]) is int:
            rv, status = rv
        provider = app.json
        if type(provider) is not DefaultJSONProvider or type(rv) is not dict or status not in HTTP_STATUS_CODES:
            return None
        if not (provider.compact if provider.compact is not None else not app.debug):
            return None
        body = (provider.dumps(rv, separators=(",", ":")) + "\n").encode()
        return cls(body, status, provider.mimetype)
