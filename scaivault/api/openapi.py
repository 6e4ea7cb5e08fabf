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
from ..errors import STATUS_BY_CODE
from .params import _NO_NUL, PATH_SCHEMAS, QUERY_SCHEMAS, WEBHOOK_URL_RE, query_schema  # noqa: F401
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
    "403": "insufficient_scope, access_denied, tenant_access_denied, forbidden, mfa_required, ip_not_allowed, "
           "time_window_violation",
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


# The pipeline refuses NUL in every JSON key and string (scaivault.inputs.json_text_problem) except below a
# model's `nul_allowed_under` members: the document says so for strings, keys and free-form values.
JSON_VALUE = {"description": "any JSON value; no string or key may contain NUL",
              "anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "number"},
                        {"type": "string", "pattern": _NO_NUL},
                        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
                        {"type": "object", "propertyNames": {"pattern": _NO_NUL},
                         "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}]}
_ANNOTATIONS = {"description", "title", "examples"}


STRICT_WEBHOOK_URL_RE = r"^https://([a-z0-9-]+\.)+[a-z][a-z0-9-]*[a-z](:[1-9][0-9]{0,3})?(/[^\s]*)?$"


def _installed(components: dict, rt: Any) -> dict:
    from ..dynamic import installed_plugins
    from ..plugins import registrations

    try:
        dns = sorted(registrations("scaivault_dns_providers", getattr(rt, "plugins", None)))
        databases = installed_plugins(rt)
    except Exception:          # a plugin that fails to load: the document keeps the open form
        return components
    for model, member, names in (("DnsProviderBody", "provider_type", dns), ("EngineCreateConfig", "plugin", databases),
                                 ("EngineConfig", "plugin", databases)):
        props = components.get(model, {}).get("properties", {})
        if member in props and names:
            props[member] = {**{k: v for k, v in props[member].items() if k in ("description", "title")},
                             "type": "string", "enum": list(names)}
    return components


def _replace_pattern(schema: Any, old: str, new: str) -> Any:
    if isinstance(schema, list):
        return [_replace_pattern(s, old, new) for s in schema]
    if isinstance(schema, dict):
        return {k: (new if k == "pattern" and v == old else _replace_pattern(v, old, new)) for k, v in schema.items()}
    return schema


def storable(schema: Any) -> Any:
    """`schema` declaring what the pipeline refuses: NUL in strings and keys; free-form values as JsonValue.

    Also drops `default: null` from members that do not accept null (an omitted member, never a null one).
    """
    if isinstance(schema, list):
        return [storable(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if not (set(schema) - _ANNOTATIONS):           # `Any`: a free-form value
        return {**schema, "$ref": "#/components/schemas/JsonValue"}
    out = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "patternProperties"):
            out[key] = {name: storable(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems", "not"):
            out[key] = storable(value)
        else:
            out[key] = value
    kind = out.get("type")
    if kind == "string" and not ({"pattern", "enum", "const", "format"} & set(out)):
        out["pattern"] = _NO_NUL
    elif kind == "string" and "pattern" in out and out["pattern"] != _NO_NUL:
        out["allOf"] = [*out.get("allOf", []), {"pattern": _NO_NUL}]     # a pattern (`\S`, `.`) may let NUL by
    if kind == "object" and out.get("additionalProperties") is True:
        out["additionalProperties"] = {"$ref": "#/components/schemas/JsonValue"}   # `dict[str, Any]`
    if kind == "array" and "items" not in out and "prefixItems" not in out:
        out["items"] = {"$ref": "#/components/schemas/JsonValue"}
    if kind == "object" and "propertyNames" not in out and out.get("additionalProperties") is not False:
        out["propertyNames"] = {"pattern": _NO_NUL}
    if "default" in out and out["default"] is None and not _nullable(out):
        del out["default"]
    return out


def _nullable(schema: dict) -> bool:
    kind = schema.get("type")
    return (kind == "null" or (isinstance(kind, list) and "null" in kind)
            or any(_nullable(b) for b in [*schema.get("anyOf", ()), *schema.get("oneOf", ())] if isinstance(b, dict)))


def storable_model(model: type[BaseModel], schema: dict) -> dict:
    """`storable(schema)`, leaving the members of `model.nul_allowed_under` as declared (sealed secret data)."""
    allowed = getattr(model, "nul_allowed_under", frozenset())
    out = storable(schema)
    for name in allowed:
        if name in schema.get("properties", {}):
            out["properties"][name] = schema["properties"][name]
    return out


def query_parameter(name: str, description: Any) -> dict:
    text, schema = query_schema(name, description)
    return {"name": name, "in": "query", "required": False, "description": text, "schema": dict(schema)}


def error_responses() -> dict[str, dict]:
    """One reusable response per error status, naming every code of STATUS_BY_CODE it carries (docs/errors.md)."""
    by_status: dict[int, list[str]] = {}
    for code, status in STATUS_BY_CODE.items():
        by_status.setdefault(status, []).append(code)
    out = {}
    for status in sorted(set(by_status) | {int(s) for s in _ERRORS}):
        codes = sorted(by_status.get(status, []))
        out[f"E{status}"] = {"description": _ERRORS.get(str(status)) or ", ".join(codes),
                             "x-error-codes": codes,
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}}
    return out


_EXTRA_LINKS = {("/v1/audit/export", "post"): ("/v1/audit/exports/{export_id}", "export_id")}


def add_links(paths: dict[str, dict]) -> None:
    """OpenAPI links from each create (POST answering 201/202) to the operations on the object it made.

    `POST /v1/policies` -> get/update/delete `/v1/policies/{policy_id}` with `$response.body#/id`; the
    parameters already in the create's path come from the request (`$request.path.<name>`), so a fuzzer
    reaches bindings, exports, roles... with real ids.
    """
    param_re = re.compile(r"\{([^}]+)\}")
    for path, ops in paths.items():
        create = ops.get("post")
        if create is None or not ({"201", "202"} & set(create["responses"])):
            continue
        status = "201" if "201" in create["responses"] else "202"
        targets = [(other, other[len(path) + 1:]) for other in paths
                   if other.startswith(path + "/{") and "/" not in other[len(path) + 1:]]
        if (path, "post") in _EXTRA_LINKS:
            target, field = _EXTRA_LINKS[(path, "post")]
            targets.append((target, "{" + field + "}"))
        links: dict[str, Any] = {}
        for target, segment in targets:
            new_param = param_re.fullmatch(segment)
            if not new_param:
                continue
            name = new_param.group(1)
            field = "name" if name == "name" else name if (path, "post") in _EXTRA_LINKS else "id"
            for method, op in paths[target].items():
                params = {p: f"$request.path.{p}" for p in param_re.findall(path)}
                params[name] = f"$response.body#/{field}"
                links[f"{method.upper()} {target}".replace("/", "_").replace(" ", "")[:80]] = {
                    "operationId": op["operationId"], "parameters": params}
        if links:
            create["responses"][status] = {**create["responses"][status], "links": links}


def _openapi_path(rule: str) -> tuple[str, list[dict]]:
    params: list[dict] = []

    def sub(m: re.Match) -> str:
        conv, name = m.group("conv"), m.group("name")
        schema = dict(_CONVERTER_TYPES.get(conv or "") or PATH_SCHEMAS.get(name) or
                      {"type": "string", "minLength": 1, "pattern": r"^[^\u0000/]+$"})
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
        for param in path_params:
            if param["name"] in (_view_attr(view, "path_schemas") or {}):
                param["schema"] = dict(view.path_schemas[param["name"]])
        path_params = [p for p in path_params if p["name"] not in (rule.defaults or {})]
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            operations.append((path, method.lower(), rule, view, path_params))
            for attr in ("body_model", "response_model", "body_doc", "form_doc"):
                model = _view_attr(view, attr)
                if model is not None:
                    models[model] = None

    refs: dict[type[BaseModel], dict] = {}
    components: dict[str, Any] = {"ErrorEnvelope": ERROR_SCHEMA}
    if models:
        key_map, defs = models_json_schema([(m, "validation") for m in models],
                                           ref_template="#/components/schemas/{model}")
        refs = {m: key_map[(m, "validation")] for m in models}
        by_name = {ref["$ref"].rsplit("/", 1)[-1]: m for m, ref in refs.items()}
        for name, schema in defs.get("$defs", {}).items():
            components[name] = storable_model(by_name[name], schema) if name in by_name else storable(schema)
    components["JsonValue"] = JSON_VALUE
    rt = app.extensions.get("scaivault")
    if rt is not None:      # names the deployment has plugins for (the services refuse others)
        components = _installed(components, rt)
    settings = getattr(rt, "settings", None)
    if settings is not None and not settings.webhook_allow_http:
        # this deployment takes https only, and refuses loopback, private and IP-literal-looking hosts: the
        # document names a form the server accepts (a DNS name with a dot; its addresses are checked at delivery)
        components = _replace_pattern(components, WEBHOOK_URL_RE, STRICT_WEBHOOK_URL_RE)

    paths: dict[str, dict] = {}
    seen_ids: set[str] = set()
    for path, method, rule, view, path_params in operations:
        authenticated = _view_attr(view, "authenticated", True)
        scope = _view_attr(view, "required_scope")
        category = _view_attr(view, "rate_category")
        body = _view_attr(view, "body_model") or _view_attr(view, "body_doc")
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
            params.append(query_parameter(name, description))
        for name, text in (_view_attr(view, "request_headers") or {}).items():
            params.append({"name": name, "in": "header", "required": True, "description": text,
                           "schema": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": r"^[\x21-\x7e]+$"}})
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": refs[body]} for media in _view_attr(view, "consumes", ("application/json",))}}
            if _view_attr(view, "form_doc") is not None:
                op["requestBody"]["content"]["application/x-www-form-urlencoded"] = {"schema": refs[view.form_doc]}
        success: dict[str, Any] = {"description": "success"}
        produces = _view_attr(view, "produces", ("application/json",))
        success["content"] = {}
        if status == "204":
            produces = ()
        for media in produces:
            if media == "application/json":
                success["content"][media] = {"schema": refs[response] if response is not None else {"type": "object"}}
            else:
                success["content"][media] = {"schema": {"type": "string"}}
        headers = _view_attr(view, "response_headers") or {}
        if headers:
            success["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                  for name, text in headers.items()}
        op["responses"] = {status: success}
        if status == "201" and method == "put":
            op["responses"]["200"] = success          # PUT: 201 for a new object, 200 for a new version
        error_statuses = ["500", "503"]
        if authenticated:
            error_statuses += ["401", "403"]
        if body is not None or params or method in ("post", "put", "patch"):
            error_statuses += ["400", "422"]   # a body the view reads itself can be malformed too
        if body is not None:
            error_statuses += ["413", "415"]
        if path_params or authenticated:
            error_statuses += ["404"]      # also tenant_not_found for any tenant-scoped call
        if method in ("put", "post", "patch", "delete") and authenticated:
            error_statuses += ["409"]
        if category is not None:
            error_statuses += ["429"]
        if rule.endpoint.startswith("secrets.") and method == "get":
            error_statuses += ["410"]
        error_statuses += [str(code) for code in _view_attr(view, "extra_errors", ())]
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

    add_links(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ScaiVault API", "version": __version__,
                 "description": "Every route is also served under /v1/t/{tenant_id}/... to act in another tenant "
                                "(partner admins), equivalent to the X-Tenant-ID header."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "x-error-codes": dict(sorted(STATUS_BY_CODE.items())),
        "components": {
            "schemas": components,
            "responses": error_responses(),
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
