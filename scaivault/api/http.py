"""Small HTTP-side accessors shared by blueprints: the runtime, the current request and the JSON body."""
from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from flask import Request, current_app, request
from werkzeug.datastructures import ImmutableMultiDict

from ..errors import ScaiVaultError
from ..inputs import json_text_problem
from ..runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["scaivault"]


# The request the bare hot routes (scaivault.api.hot_routes) serve outside Flask's request
# context; unset (None) while Flask dispatches. Per greenlet/thread like Flask's own context.
_hot_request: ContextVar[Request | None] = ContextVar("scaivault_hot_request", default=None)


def current_request() -> Request:
    """The request being served: the hot route's, or Flask's. The pipeline, its hooks and the views
    ask this instead of flask.request, so that both dispatchers run the same code."""
    hot = _hot_request.get()
    return hot if hot is not None else request._get_current_object()   # type: ignore[attr-defined]


_NO_ARGS: ImmutableMultiDict = ImmutableMultiDict()


def query_args(req: Request | None = None) -> ImmutableMultiDict:
    """The request's query parameters. Without a query string (most requests, every hot read) an
    empty one: werkzeug parses nothing and builds no MultiDict."""
    req = req if req is not None else current_request()
    return req.args if req.environ.get("QUERY_STRING") else _NO_ARGS


def _not_json(constant: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259); stored, they would make later answers unparseable
    raise ValueError(f"{constant} is not a JSON value")


def json_body(*, required: bool = True, nul_allowed_under: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The request body as a JSON object, or a precise `invalid_request` error.

    Every key and string must be storable text: no lone surrogate anywhere and no NUL outside
    the top-level members in `nul_allowed_under` (a secret's sealed `data`).
    """
    req = current_request()
    raw = req.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ScaiVaultError("invalid_request", "a JSON object body is required")
        return {}
    mimetype = req.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ScaiVaultError("unsupported_media_type", "the body must be sent as application/json")
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError):     # UnicodeDecodeError is a ValueError
        raise ScaiVaultError("invalid_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ScaiVaultError("invalid_request", "the body must be a JSON object")
    problem = json_text_problem(body, nul_allowed_under=nul_allowed_under)
    if problem is not None:
        where, what = problem
        raise ScaiVaultError("invalid_request", f"the body's {where} {what}", details={"field": where})
    return body


def bool_arg(name: str, default: bool = False) -> bool:
    """A true/false query parameter (absent = `default`), or a precise `invalid_request` error."""
    raw = (query_args().get(name) or "").lower()
    if raw == "":
        return default
    if raw in ("false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ScaiVaultError("invalid_request", f"{name} must be true or false")
