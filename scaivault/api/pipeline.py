"""The request pipeline every endpoint runs: authenticate -> tenant -> rate limit -> scope -> authorise.

Views declare their place with @endpoint(category, scope=..., authorize=...): the declared
authorisation (scaivault.api.authorization) is checked here, before the view runs, so a view
body holds only the domain call and its audit entry. The attributes @endpoint leaves on the
view let tests walk the URL map (every authenticated view must declare `authorize`).
"""
from __future__ import annotations

import functools
import json
from typing import Callable

from flask import g
from pydantic import BaseModel, ValidationError

from .. import ratelimit
from ..errors import ScaiVaultError, ValidationFailed
from ..auth import authenticate_request, require_scope, resolve_tenant
from .auditing import record_failure
from .authorization import Authorization
from .http import current_request, json_body, runtime


def endpoint(category: str | None, *, scope: str | None = None, authenticated: bool = True,
             tenant: bool = True, body: type[BaseModel] | None = None,
             response: type[BaseModel] | None = None, summary: str | None = None,
             query: dict[str, str] | None = None, status: int = 200,
             authorize: Authorization | None = None, produces: tuple[str, ...] = ("application/json",),
             response_headers: dict[str, str] | None = None) -> Callable:
    """Wrap a view in the pipeline. `category=None` only for unmetered probes (health, metrics).

    `body`: a pydantic model; the JSON body is validated into `g.body` before the view runs
    (malformed JSON -> 400 invalid_request, failing fields -> 422 validation_error).
    `response`: a pydantic model documenting the 2xx body in /v1/openapi.json.
    `query`: documented query parameters {name: description}; `status`: the success status.
    `authorize`: what the caller needs beyond the scope (scaivault.api.authorization: identity_only(),
    permission("read"), admin(), role("super_admin"), reach("tenant_id")); required on every
    authenticated view (a test walks the URL map), checked after the scope and before the body.
    `produces`: the success content types (OpenAPI); `response_headers`: {name: description} of the success answer.
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
        wrapper.summary = summary or (view.__doc__ or "").strip().split("\n")[0]  # type: ignore[attr-defined]
        return wrapper

    return decorate


def parse_body(model: type[BaseModel]) -> BaseModel:
    """The JSON body validated strictly against `model`; field errors become 422 validation_error.

    Strict JSON-mode validation: `"cas": true` is not 1 and `"cas": "2"` is not 2 (issue 9 F13);
    a model names the members that may hold NUL in `nul_allowed_under` (sealed secret data).
    """
    raw = json_body(nul_allowed_under=getattr(model, "nul_allowed_under", frozenset()))
    try:
        return model.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as exc:
        fields = {".".join(str(p) for p in err["loc"]) or "body": err["msg"] for err in exc.errors()}
        raise ValidationFailed(fields) from None
