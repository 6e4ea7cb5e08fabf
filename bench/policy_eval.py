"""Policy evaluation cost: a cached AccessControl decision and a bare PolicySet.decide, in microseconds.

No servers: the cache's loader and Redis are in-process stand-ins (fakeredis), so this
measures only the evaluation path a request takes once the caller's policies are compiled.
Usage: python bench/policy_eval.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import fakeredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaivault.auth.identity import Identity, TenantContext  # noqa: E402
from scaivault.policy.access import AccessControl, request_context  # noqa: E402
from scaivault.policy.cache import PolicyCache  # noqa: E402

RULES = [{"path_pattern": f"team-{i}/**", "permissions": ["read", "list"]} for i in range(20)]
RULES += [{"path_pattern": "shared/*/db-?", "permissions": ["read"]},
          {"path_pattern": "team-3/prod/**", "permissions": ["read"], "effect": "deny"},
          {"path_pattern": "ops/**", "permissions": ["read"], "conditions": {"ip_ranges": ["10.0.0.0/8"]}}]


def per_call_us(fn, n: int = 200_000) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    cache = PolicyCache(fakeredis.FakeRedis(), lambda t, p, ids: [("pol_1", "bench", RULES, None)])
    access = AccessControl(cache)
    identity = Identity("user:bench@acme.example", "user", "usr_1", "tnt_1", "ptn_1", frozenset({"secrets:read"}),
                        groups=("group:sre",))
    tenant = TenantContext("tnt_1", "ptn_1")
    ctx = request_context(identity, "10.1.2.3")
    policies = access.tenant_policies(identity, tenant)
    print(f"{len(RULES)} rules in one policy")
    for path in ("team-19/api/db", "shared/api/db-1", "ops/x/y", "nowhere/at/all", "team-3/prod/db"):
        bare = per_call_us(lambda: policies.decide(path, "read", ctx))
        full = per_call_us(lambda: access.decide(identity, tenant, path, "read", ctx), 100_000)
        verdict = policies.decide(path, "read", ctx)
        print(f"{path:20s} {'allow' if verdict.allowed else verdict.code:15s} decide {bare:5.1f} us; "
              f"with cache lookup {full:5.1f} us")


if __name__ == "__main__":
    main()
