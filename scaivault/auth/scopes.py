"""The scope vocabulary ScaiVault checks (spec/10 section 2.4 plus the scopes its endpoints name)."""
from __future__ import annotations

ALL_SCOPES = frozenset({
    "secrets:read", "secrets:write", "secrets:delete", "secrets:list", "secrets:rotate",
    "policies:read", "policies:write",
    "audit:read", "audit:export",
    "pki:issue", "pki:admin",
    "dynamic:read", "dynamic:write", "dynamic:admin", "dynamic:manage", "leases:read", "leases:write",
    "webhooks:read", "webhooks:write", "subscriptions:read", "subscriptions:write",
    "federation:read", "federation:write",
    "identity:read", "identity:admin",
    "admin",
})


def parse_scope_claim(value) -> frozenset[str]:
    """The `scope` claim (space-separated string, or a list) as a set of scope strings."""
    if isinstance(value, str):
        return frozenset(s for s in value.split() if s)
    if isinstance(value, list):
        return frozenset(s for s in value if isinstance(s, str) and s)
    return frozenset()


def endpoint_scopes() -> frozenset[str]:
    """Every scope some registered endpoint requires (read from the @endpoint attributes)."""
    import importlib
    import inspect

    from ..api import BLUEPRINT_MODULES

    found: set[str] = set()
    for module_path in BLUEPRINT_MODULES:
        try:
            module = importlib.import_module(module_path)
        except ImportError:
            continue
        for value in vars(module).values():
            if inspect.isfunction(value) and isinstance(getattr(value, "required_scope", None), str):
                found.add(value.required_scope)
    return frozenset(found)
