"""Small HTTP-side accessors shared by blueprints: the runtime and the JSON body."""
from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from ..errors import ScaiVaultError
from ..inputs import json_text_problem
from ..runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["scaivault"]


def _not_json(constant: str) -> None:
    # NaN and Infinity are not JSON (RFC 8259); stored, they would make later answers unparseable
    raise ValueError(f"{constant} is not a JSON value")


def json_body(*, required: bool = True, nul_allowed_under: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The request body as a JSON object, or a precise `invalid_request` error.

    Every key and string must be storable text: no lone surrogate anywhere and no NUL outside
    the top-level members in `nul_allowed_under` (a secret's sealed `data`).
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ScaiVaultError("invalid_request", "a JSON object body is required")
        return {}
    mimetype = request.mimetype
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
    raw = (request.args.get(name) or "").lower()
    if raw == "":
        return default
    if raw in ("false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ScaiVaultError("invalid_request", f"{name} must be true or false")
