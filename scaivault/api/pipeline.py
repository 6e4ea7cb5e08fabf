"""The request pipeline every endpoint runs: authenticate -> tenant -> rate limit -> scope -> authorise.

Views declare their place with @endpoint(category, scope=..., authorize=...): the declared
authorisation (scaivault.api.authorization) is checked here, before the view runs, so a view
body holds only the domain call and its audit entry. The attributes @endpoint leaves on the
view let tests walk the URL map (every authenticated view must declare `authorize`).
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable

from flask import g
from pydantic import BaseModel, ValidationError

from .. import ratelimit
from ..errors import ScaiVaultError, ValidationFailed
from ..auth import authenticate_request, require_scope, resolve_tenant
from .auditing import record_failure
from .authorization import Authorization
from .http import current_request, json_body, query_args, runtime
from .params import PATTERN_CODES, check_query


def endpoint(category: str | None, *, scope: str | None = None, authenticated: bool = True,
             tenant: bool = True, body: type[BaseModel] | None = None,
             response: type[BaseModel] | None = None, summary: str | None = None,
             query: dict[str, str] | None = None, status: int = 200,
             authorize: Authorization | None = None, produces: tuple[str, ...] = ("application/json",),
             response_headers: dict[str, str] | None = None, body_doc: type[BaseModel] | None = None,
             consumes: tuple[str, ...] = ("application/json",),
             request_headers: dict[str, str] | None = None, path: dict[str, dict] | None = None,
             form_doc: type[BaseModel] | None = None, errors: tuple[int, ...] = ()) -> Callable:
    """Wrap a view in the pipeline. `category=None` only for unmetered probes (health, metrics).

    `body`: a pydantic model; the JSON body is validated into `g.body` before the view runs
    (malformed JSON -> 400 invalid_request, failing fields -> 422 validation_error).
    `response`: a pydantic model documenting the 2xx body in /v1/openapi.json.
    `query`: documented query parameters {name: description}; `status`: the success status.
    `authorize`: what the caller needs beyond the scope (scaivault.api.authorization: identity_only(),
    permission("read"), admin(), role("super_admin"), reach("tenant_id")); required on every
    authenticated view (a test walks the URL map), checked after the scope and before the body.
    `produces`: the success content types (OpenAPI); `response_headers`: {name: description} of the success answer.
    `body_doc`: the model of a body the view parses itself (documented, required), in the media types `consumes`;
    `request_headers`: {name: description} of required request headers (documented);
    `path`: {name: JSON schema} of this route's path parameters where the name alone does not tell (params.py);
    `form_doc`: the model of the same body sent form-encoded (strings only); `errors`: statuses beyond the usual.
    """
    if category is not None and category not in ratelimit.CATEGORIES:
        raise ValueError(f"unknown rate-limit category {category!r}")

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            state = g._get_current_object()     # one context lookup, not one per attribute
            if authenticated:
                rt = runtime()
                request = current_request()
                state.identity = identity = authenticate_request(rt, request)
            try:
                if authenticated and tenant:
                    state.tenant = resolve_tenant(rt, identity, request)
                if category is not None:
                    ratelimit.enforce(category)
                if scope is not None:
                    require_scope(identity, scope)
                if authorize is not None and authenticated:
                    authorize.check(kwargs)
                if query:
                    check_query(query, query_args())
                if body is not None:
                    g.body = parse_body(body)
                return view(*args, **kwargs)
            except ScaiVaultError as exc:
                if authenticated:
                    record_failure(rt, category, exc)   # views never audit their own refusals
                raise
            except Exception:
                if authenticated:
                    record_failure(rt, category, ScaiVaultError("internal_error", "internal error"))
                raise

        wrapper.rate_category = category          # type: ignore[attr-defined]
        wrapper.required_scope = scope            # type: ignore[attr-defined]
        wrapper.authenticated = authenticated     # type: ignore[attr-defined]
        wrapper.authorization = authorize         # type: ignore[attr-defined]
        wrapper.body_model = body                 # type: ignore[attr-defined]
        wrapper.response_model = response         # type: ignore[attr-defined]
        wrapper.query_params = dict(query or {})  # type: ignore[attr-defined]
        wrapper.success_status = status          # type: ignore[attr-defined]
        wrapper.produces = produces              # type: ignore[attr-defined]
        wrapper.response_headers = dict(response_headers or {})  # type: ignore[attr-defined]
        wrapper.body_doc = body_doc                # type: ignore[attr-defined]
        wrapper.consumes = consumes                # type: ignore[attr-defined]
        wrapper.request_headers = dict(request_headers or {})  # type: ignore[attr-defined]
        wrapper.path_schemas = dict(path or {})    # type: ignore[attr-defined]
        wrapper.form_doc = form_doc                # type: ignore[attr-defined]
        wrapper.extra_errors = tuple(errors)       # type: ignore[attr-defined]
        wrapper.summary = summary or (view.__doc__ or "").strip().split("\n")[0]  # type: ignore[attr-defined]
        return wrapper

    return decorate


def parse_body(model: type[BaseModel]) -> BaseModel:
    """The JSON body validated strictly against `model`; field errors become 422 validation_error.

    Strict JSON-mode validation: `"cas": true` is not 1 and `"cas": "2"` is not 2 (issue 9 F13);
    a model names the members that may hold NUL in `nul_allowed_under` (sealed secret data).
    """
    raw = json_body(nul_allowed_under=getattr(model, "nul_allowed_under", frozenset()))
    raw = integral_numbers(raw, *_int_schema(model))
    try:
        return model.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as exc:
        raise validation_failure(model, exc) from None


def validation_failure(model: type[BaseModel], exc: ValidationError) -> ScaiVaultError:
    """The error a failed body validation answers: a member's documented code (the model's `field_codes`, a
    path's invalid_path, a duration's invalid_duration...) or 422 validation_error naming every field."""
    errors = exc.errors()
    for err in errors:      # a bad discriminator names its member: `destination.type`, `fields[0].generator`
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            name = str((err.get("ctx") or {}).get("discriminator", "type")).strip("'")
            err["loc"] = (*err["loc"], name if name.isidentifier() else "type")   # a callable one: `type`
    field_codes = getattr(model, "field_codes", {})     # e.g. {"rules": "invalid_policy"}: the documented code
    for err in errors:
        missing_top = err["type"] == "missing" and len(err["loc"]) == 1
        if (err["loc"] and err["loc"][0] in field_codes   # also a member the model leaves out (a PATCH's `name`)
                and (err["type"] != "missing" or (missing_top and getattr(model, "codes_for_missing", False)))):
            field = _loc(err["loc"], getattr(model, "loc_tags", None))
            return ScaiVaultError(field_codes[err["loc"][0]], f"{field}: {err['msg']}", details={"field": field})
    for err in errors:      # a path or a duration keeps its documented code (invalid_path, invalid_duration)
        pattern = (err.get("ctx") or {}).get("pattern")
        if err["type"] == "string_pattern_mismatch" and pattern in PATTERN_CODES:
            code, message = PATTERN_CODES[pattern]
            field = _loc(err["loc"], getattr(model, "loc_tags", None))
            return ScaiVaultError(code, f"{field} {message}", details={"field": field})
    return ValidationFailed({_loc(err["loc"], getattr(model, "loc_tags", None)) or "body": err["msg"]
                             for err in errors})


def _loc(loc: tuple, tags: frozenset[str] | None) -> str:
    """`a.b.c` (a dict key's `[key]` marker dropped); for a model with discriminated unions (`loc_tags`), without
    the tag and with list indexes as `[i]`: `fields[0].config.length`, `destination.bucket`."""
    out = ""
    for i, part in enumerate(loc):
        if part == "[key]" or (tags and i > 0 and isinstance(part, str) and part in tags):
            continue
        if tags and isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@functools.lru_cache(maxsize=None)
def _int_schema(model: type[BaseModel]) -> tuple[dict, dict]:
    schema = model.model_json_schema(mode="validation")
    return schema, schema.get("$defs", {})


def integral_numbers(value: Any, schema: dict, defs: dict, depth: int = 0) -> Any:
    """`value` with every integral float (`2.0`) the model declares an integer turned into an int.

    JSON and JSON Schema do not tell `2.0` from `2` (a JSON Schema `integer` accepts both), while pydantic's
    strict mode, which keeps `true`/`"2"` from passing as 2, refuses `2.0`. Guided by the model's schema, so
    free-form members (metadata, secret data) are left exactly as sent.
    """
    if depth > 32 or not isinstance(schema, dict):
        return value
    ref = schema.get("$ref")
    if ref:
        schema = defs.get(ref.rsplit("/", 1)[-1], {})
    if isinstance(value, float):
        if value.is_integer() and _allows_integer(schema, defs) and abs(value) < 2 ** 63:
            return int(value)
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and not isinstance(extra, dict):
            for branch in schema.get("anyOf", ()) or schema.get("oneOf", ()):
                target = defs.get(branch.get("$ref", "").rsplit("/", 1)[-1], branch)
                if target.get("type") == "object" or "properties" in target:
                    return integral_numbers(value, target, defs, depth + 1)
            return value
        return {k: integral_numbers(v, (props or {}).get(k, extra if isinstance(extra, dict) else {}), defs, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        if items is None:
            for branch in schema.get("anyOf", ()):
                if branch.get("type") == "array":
                    items = branch.get("items")
        if isinstance(items, dict):
            return [integral_numbers(v, items, defs, depth + 1) for v in value]
    return value


def _allows_integer(schema: dict, defs: dict) -> bool:
    if schema.get("type") == "integer":
        return True
    return any(_allows_integer(defs.get(b.get("$ref", "").rsplit("/", 1)[-1], b), defs)
               for b in [*schema.get("anyOf", ()), *schema.get("oneOf", ())])
