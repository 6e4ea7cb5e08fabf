"""Small HTTP-side accessors shared by blueprints: the runtime and the JSON body."""
from __future__ import annotations

from typing import Any

from flask import current_app, request

from ..errors import ScaiVaultError
from ..runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["scaivault"]


def json_body(*, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, or a precise `invalid_request` error."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise ScaiVaultError("invalid_request", "a JSON object body is required")
        return {}
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ScaiVaultError("unsupported_media_type", "the body must be sent as application/json")
    try:
        body = request.get_json(force=True, silent=False)
    except Exception:
        raise ScaiVaultError("invalid_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ScaiVaultError("invalid_request", "the body must be a JSON object")
    return body


def bool_arg(name: str) -> bool:
    """A true/false query parameter (absent = false), or a precise `invalid_request` error."""
    raw = (request.args.get(name) or "").lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ScaiVaultError("invalid_request", f"{name} must be true or false")
