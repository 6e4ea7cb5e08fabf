"""The request pipeline every endpoint runs: authenticate -> tenant -> rate limit -> scope.

Policy authorisation, the service call and the audit entry follow inside the view, which
knows the path it acts on. Views declare their place with @endpoint(category, scope=...);
the attributes it leaves on the view let tests walk the URL map.
"""
from __future__ import annotations

import functools
from typing import Callable

from flask import g, request

from .. import ratelimit
from ..auth import authenticate_request, require_scope, resolve_tenant
from .http import runtime


def endpoint(category: str | None, *, scope: str | None = None, authenticated: bool = True,
             tenant: bool = True) -> Callable:
    """Wrap a view in the pipeline. `category=None` only for unmetered probes (health, metrics)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if authenticated:
                rt = runtime()
                g.identity = authenticate_request(rt, request)
                if tenant:
                    g.tenant = resolve_tenant(rt, g.identity, request)
            if category is not None:
                ratelimit.enforce(category)
            if scope is not None:
                require_scope(g.identity, scope)
            return view(*args, **kwargs)

        wrapper.rate_category = category          # type: ignore[attr-defined]
        wrapper.required_scope = scope            # type: ignore[attr-defined]
        wrapper.authenticated = authenticated     # type: ignore[attr-defined]
        return wrapper

    return decorate
