"""GET /v1/openapi.json: an OpenAPI 3.1 document generated from the Flask URL map.

Every route is described from what the @endpoint decorator left on its view (body_model,
response_model, required_scope, rate_category, query_params, success_status, summary), so
the document cannot drift from behaviour: the same pydantic models validate the bodies.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from .pipeline import endpoint

bp = Blueprint("openapi", __name__)

_ARG_RE = re.compile(r"<(?:(?P<conv>[a-z_]+)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")
_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}, "uuid": {"type": "string", "format": "uuid"}}
_IGNORED_METHODS = {"HEAD", "OPTIONS"}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "request_id"],
        "properties": {
            "code": {"type": "string", "description": "stable error code; branch on this"},
            "message": {"type": "string"},
            "details": {"type": "object", "description": "code-specific context (path, fields, failed_condition...)"},
            "request_id": {"type": "string", "description": "equals the X-Request-ID response header"},
        },
    }},
}

_ERRORS = {
    "400": "invalid_request, invalid_path, invalid_cursor, invalid_duration, invalid_policy, invalid_glob, ...",
    "401": "authentication_required, token_expired, token_invalid, token_revoked",
    "403": "insufficient_scope, access_denied, mfa_required, ip_not_allowed, time_window_violation",
    "404": "the named object does not exist (secret_not_found, policy_not_found, ...)",
    "409": "conflict (version_conflict, secret_exists, policy_in_use, ...)",
    "410": "gone (secret_expired, version_destroyed)",
    "413": "payload_too_large",
    "415": "unsupported_media_type",
    "422": "validation_error with details.fields",
    "429": "rate_limited, with Retry-After",
    "500": "internal_error",
    "503": "service_unavailable, audit_unavailable, kms_unavailable",
}


def _openapi_path(rule: str) -> tuple[str, list[dict]]:
    params: list[dict] = []

    def sub(m: re.Match) -> str:
        conv, name = m.group("conv"), m.group("name")
        schema = dict(_CONVERTER_TYPES.get(conv or "", {"type": "string"}))
        param = {"name": name, "in": "path", "required": True, "schema": schema}
        if conv == "path":
            param["description"] = "may contain '/' (a multi-segment path, sent as-is)"
            param["x-multi-segment"] = True
        params.append(param)
        return "{" + name + "}"

    return _ARG_RE.sub(sub, rule), params


def _view_attr(view: Any, name: str, default: Any = None) -> Any:
    return getattr(view, name, default)


def build_document(app: Flask) -> dict:
    """The OpenAPI 3.1 document of every route `app` serves."""
    models: dict[type[BaseModel], None] = {}
    operations: list[tuple[str, str, Any, Any, list[dict]]] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint == "static" or not rule.rule.startswith("/v1/"):
            continue   # the API document: not the admin UI's pages
        view = app.view_functions[rule.endpoint]
        path, path_params = _openapi_path(rule.rule)
        path_params = [p for p in path_params if p["name"] not in (rule.defaults or {})]
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            operations.append((path, method.lower(), rule, view, path_params))
            for attr in ("body_model", "response_model"):
                model = _view_attr(view, attr)
                if model is not None:
                    models[model] = None

    refs: dict[type[BaseModel], dict] = {}
    components: dict[str, Any] = {"ErrorEnvelope": ERROR_SCHEMA}
    if models:
        key_map, defs = models_json_schema([(m, "validation") for m in models],
                                           ref_template="#/components/schemas/{model}")
        components.update(defs.get("$defs", {}))
        refs = {m: key_map[(m, "validation")] for m in models}

    paths: dict[str, dict] = {}
    seen_ids: set[str] = set()
    for path, method, rule, view, path_params in operations:
        authenticated = _view_attr(view, "authenticated", True)
        scope = _view_attr(view, "required_scope")
        category = _view_attr(view, "rate_category")
        body = _view_attr(view, "body_model")
        response = _view_attr(view, "response_model")
        status = str(_view_attr(view, "success_status", 200) or 200)
        op_id = rule.endpoint.replace(".", "_")
        if op_id in seen_ids:
            op_id = f"{op_id}_{method}"
        seen_ids.add(op_id)
        op: dict[str, Any] = {
            "operationId": op_id,
            "tags": [rule.endpoint.split(".")[0]],
            "summary": _view_attr(view, "summary") or (view.__doc__ or "").strip().split("\n")[0] or op_id,
        }
        params = list(path_params)
        for name, description in (_view_attr(view, "query_params") or {}).items():
            params.append({"name": name, "in": "query", "required": False, "description": description,
                           "schema": {"type": "string"}})
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[body]}}}
        success: dict[str, Any] = {"description": "success"}
        if response is not None:
            success["content"] = {"application/json": {"schema": refs[response]}}
        else:
            success["content"] = {"application/json": {"schema": {"type": "object"}}}
        op["responses"] = {status: success}
        if status == "201" and method == "put":
            op["responses"]["200"] = success          # PUT: 201 for a new object, 200 for a new version
        error_statuses = ["500", "503"]
        if authenticated:
            error_statuses += ["401", "403"]
        if body is not None or params:
            error_statuses += ["400", "422"]
        if body is not None:
            error_statuses += ["413", "415"]
        if path_params:
            error_statuses += ["404"]
        if method in ("put", "post", "patch", "delete") and authenticated:
            error_statuses += ["409"]
        if category is not None:
            error_statuses += ["429"]
        if rule.endpoint.startswith("secrets.") and method == "get":
            error_statuses += ["410"]
        for code in sorted(set(error_statuses)):
            op["responses"][code] = {"$ref": f"#/components/responses/E{code}"}
        if authenticated:
            op["security"] = [{"bearerAuth": []}]
        else:
            op["security"] = []
        if scope:
            op["x-required-scope"] = scope
        authorization = _view_attr(view, "authorization")
        if authorization is not None:
            op["x-authorization"] = authorization.describe()
        if category:
            op["x-rate-limit-category"] = category
        paths.setdefault(path, {})[method] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": "ScaiVault API", "version": __version__,
                 "description": "Every route is also served under /v1/t/{tenant_id}/... to act in another tenant "
                                "(partner admins), equivalent to the X-Tenant-ID header."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {f"E{code}": {"description": text,
                                       "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}
                          for code, text in _ERRORS.items()},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "a ScaiKey JWT or a personal access token (skt_...)"}},
        },
    }


@bp.get("/v1/openapi.json")
@endpoint(None, authenticated=False, summary="This OpenAPI 3.1 document")
def openapi_document():
    app = current_app._get_current_object()   # type: ignore[attr-defined]
    document = app.extensions.get("scaivault_openapi")
    if document is None:
        document = app.extensions["scaivault_openapi"] = build_document(app)
    return jsonify(document)
