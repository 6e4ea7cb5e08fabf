"""Per-identity compiled policy sets, cached in process and invalidated across instances.

A policy change increments a Redis counter for its tenant (or partner). Every process
compares its cached sets' counters with Redis at most every CHECK_INTERVAL seconds per
tenant (one MGET), so a change is seen everywhere within a second without a round trip
per request. Without Redis nothing is cached: correctness before speed.

A new worker compiles the policy sets of recently active identities before it accepts
(scaivault.warmup): every process notes the scopes it loads in a bounded Redis sorted set
(RECENT_KEY: tenant, partner and identity ids, never a decision; only which loads to make).

The counters of one scope share the partner's hash tag (`{p:<partner>}`), so the MGET is on one
slot of a Redis Cluster; a tenant belongs to one partner.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

from ..redis_store import HintList
from .engine import PolicySet, compile_policies

log = logging.getLogger("scaivault.policy")

CHECK_INTERVAL = 0.5
ENTRY_TTL = 300.0
MAX_ENTRIES = 20000
EPOCH_KEY = "scaivault:policy_epoch:"
RECENT_KEY = "scaivault:policy_recent"
RECENT = HintList(RECENT_KEY, 1000)   # scopes noted for warm-ups (newest first); a day without use drops it

# loader(tenant_id | None, partner_id, identity_ids) -> rows (policy_id, name, rules, binding_expires_at)
Loader = Callable[[str | None, str | None, tuple[str, ...]], Iterable[tuple]]


def epoch_keys(tenant_id: str | None, partner_id: str | None) -> list[str]:
    """The partner's counter and (for a tenant) the tenant's, under one hash tag."""
    tag = "{p:" + (partner_id or "-") + "}"
    keys = [EPOCH_KEY + tag]
    if tenant_id is not None:
        keys.append(EPOCH_KEY + tag + ":t:" + tenant_id)
    return keys


def legacy_epoch_key(tenant_id: str | None, partner_id: str | None) -> str:
    """The counter's name before hash tags (instances of earlier releases read it)."""
    return EPOCH_KEY + ("t:" + tenant_id if tenant_id is not None else "p:" + (partner_id or "-"))


class PolicyCache:
    """get() returns the caller's PolicySet; invalidate() after a committed policy change."""

    def __init__(self, redis_client, loader: Loader, *, check_interval: float = CHECK_INTERVAL):
        self.redis = redis_client
        self.loader = loader
        self.check_interval = check_interval
        self._entries: dict[tuple, tuple[PolicySet, tuple, float, datetime | None]] = {}
        self._epochs: dict[tuple, tuple[tuple | None, float]] = {}
        self._lock = threading.Lock()
        self.loads = 0            # policy loads from the database (for tests and metrics)

    def _current_epochs(self, tenant_id: str | None, partner_id: str | None) -> tuple | None:
        scope = (tenant_id, partner_id)
        now = time.monotonic()
        known = self._epochs.get(scope)
        if known is not None and now - known[1] < self.check_interval:
            return known[0]
        try:
            values = tuple(self.redis.mget(epoch_keys(tenant_id, partner_id)))
        except Exception as exc:  # redis down: serve from the database until it is back
            if known is None or known[0] is not None:
                log.warning("policy cache disabled: redis unavailable", extra={"error": type(exc).__name__})
            values = None
        self._epochs[scope] = (values, now)
        return values

    def get(self, tenant_id: str | None, partner_id: str | None, identity_ids: tuple[str, ...], *,
            note: bool = True) -> PolicySet:
        """The compiled policies bound to any of `identity_ids` (the caller and its groups);
        a load is noted in RECENT_KEY unless `note` is false (a warm-up replaying the list)."""
        key = (tenant_id, partner_id, identity_ids)
        epochs = self._current_epochs(tenant_id, partner_id)
        entry = self._entries.get(key)
        if entry is not None and epochs is not None:
            policy_set, entry_epochs, loaded_at, lapse = entry
            if (entry_epochs == epochs and time.monotonic() - loaded_at < ENTRY_TTL
                    and (lapse is None or datetime.now(timezone.utc) < lapse)):
                return policy_set
        rows = list(self.loader(tenant_id, partner_id, identity_ids))
        self.loads += 1
        policy_set = compile_policies(rows)
        if epochs is not None:
            lapses = [p.binding_expires_at for p in policy_set.policies if p.binding_expires_at is not None]
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = (policy_set, epochs, time.monotonic(), min(lapses) if lapses else None)
            if note:        # Redis answered the epoch read just now; a load is rare (one per identity per TTL)
                RECENT.note(self.redis, [tenant_id, partner_id, list(identity_ids)])
        return policy_set

    def recent_scopes(self, limit: int) -> list[tuple[str | None, str | None, tuple[str, ...]]]:
        """The newest `limit` scopes any process loaded: (tenant, partner, identity ids); malformed
        members are skipped (Redis content only chooses which database loads a warm-up makes)."""
        scopes = []
        for member in RECENT.newest(self.redis, limit):
            if not (isinstance(member, list) and len(member) == 3):
                continue
            tenant_id, partner_id, ids = member
            if (all(v is None or (isinstance(v, str) and len(v) <= 256) for v in (tenant_id, partner_id))
                    and isinstance(ids, list) and 0 < len(ids) <= 256
                    and all(isinstance(i, str) and len(i) <= 512 for i in ids)):
                scopes.append((tenant_id, partner_id, tuple(ids)))
        return scopes

    def invalidate(self, tenant_id: str | None, partner_id: str | None) -> None:
        """Announce a committed change: bump the counter(s) and drop this process's entries at once."""
        # the scope's own counter, and its pre-hash-tag name so that instances of an earlier release
        # see the change during a rolling upgrade (a non-transactional pipeline may span slots)
        keys = [epoch_keys(tenant_id, partner_id)[-1], legacy_epoch_key(tenant_id, partner_id)]
        try:
            pipe = self.redis.pipeline(transaction=False)
            for k in keys:
                pipe.incr(k)
            pipe.execute()
        except Exception as exc:
            log.warning("policy invalidation not published: redis unavailable", extra={"error": type(exc).__name__})
        with self._lock:
            self._entries.clear()
            self._epochs.clear()
