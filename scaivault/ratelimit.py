"""Rate limits per (identity, category); see spec/10 section 8.

CATEGORIES is the one list of category keys: every endpoint names one of them (or None for
health and metrics probes), and RATE_LIMITS may override any of them by the same key.
"""
from __future__ import annotations

# key -> (rate, window seconds): the managed-service defaults of spec/10 section 8.2
CATEGORIES: dict[str, tuple[int, int]] = {
    "secrets:read": (1000, 60),
    "secrets:write": (100, 60),
    "secrets:delete": (100, 60),
    "secrets:list": (100, 60),
    "secrets:batch": (100, 60),
    "secrets:batch_metadata": (100, 60),
    "audit:read": (50, 60),
    "audit:export": (5, 60),
    "policies": (50, 60),
    "policies:test": (200, 60),
    "pki:issue": (50, 60),
    "pki:admin": (20, 60),
    "acme:order": (30, 60),
    "webhooks": (20, 60),
    "subscriptions": (20, 60),
    "subscriptions:poll": (240, 60),
    "federation": (20, 60),
    "dynamic:generate": (100, 60),
    "dynamic:admin": (20, 60),
    "leases": (100, 60),
    "identity:read": (100, 60),
    "identity:sync": (5, 60),
    "identity:webhook": (600, 60),   # ScaiKey's signed deliveries, keyed by client IP
    "auth": (300, 60),               # whoami, introspect, personal tokens
    "system": (20, 60),              # key rotation, plugin listing
}


def enforce(category: str, cost: int = 1) -> None:
    """Take `cost` units from the caller's bucket for `category`, or raise rate_limited."""
    return None
