"""Large rate-limit buckets leased to a process in slices (issue 10): most requests decide in
memory, the fleet never admits more than the shared bucket gave out, unused slices go back."""
from __future__ import annotations

import math
import secrets
import time

import pytest

from scaivault import ratelimit

LARGE = "secrets:read:\n  rate: 1000\n  window: 1h\n"


@pytest.fixture
def two_instances(make_app):
    return [make_app(RATE_LIMITS=LARGE).extensions["scaivault_rate_limits"] for _ in range(2)]


def count_round_trips(monkeypatch, limits) -> list[int]:
    calls = [0]
    script = limits._bucket_script()

    def counted(*args, **kwargs):
        calls[0] += 1
        return script(*args, **kwargs)

    monkeypatch.setattr(limits, "_script", counted)
    return calls


def shared_level(limits, key: str) -> float:
    return float(limits.limiter.storage.get_connection().hget(key, "tokens"))


def test_a_large_bucket_decides_most_requests_in_memory(two_instances, monkeypatch):
    limits = two_instances[0]
    calls = count_round_trips(monkeypatch, limits)
    who = "usr_" + secrets.token_hex(4)
    decisions = [limits.hit("secrets:read", who) for _ in range(200)]
    assert all(d.allowed for d in decisions)
    slice_ = int(1000 * ratelimit.LEASE_FRACTION)
    assert calls[0] <= math.ceil(200 / (slice_ + 1)) + 1
    assert decisions[-1].limit == 1000 and 780 <= decisions[-1].remaining <= 801


def test_two_instances_never_admit_more_than_the_shared_bucket_gives_out(two_instances):
    who = "usr_" + secrets.token_hex(4)
    started = time.monotonic()
    admitted = sum(two_instances[i % 2].hit("secrets:read", who).allowed for i in range(1500))
    elapsed = time.monotonic() - started
    per_second = 1000 / 3600
    # the tolerance of docs/decisions.md: never above capacity + refill over the run and one lease
    # period; below it by at most the slices still held (one per instance)
    assert admitted <= 1000 + math.ceil(per_second * (elapsed + ratelimit.LEASE_SECONDS))
    assert admitted >= 1000 - 2 * int(1000 * ratelimit.LEASE_FRACTION)


def test_a_small_bucket_is_never_leased(make_app, monkeypatch):
    limits = make_app(RATE_LIMITS="secrets:read:\n  rate: 5\n  window: 1m\n").extensions["scaivault_rate_limits"]
    calls = count_round_trips(monkeypatch, limits)
    who = "usr_" + secrets.token_hex(4)
    assert [limits.hit("secrets:read", who).allowed for _ in range(6)] == [True] * 5 + [False]
    assert calls[0] == 6 and not limits._leases


def test_the_unused_part_of_an_expired_lease_goes_back_to_the_shared_bucket(two_instances):
    first, second = two_instances
    who = "usr_" + secrets.token_hex(4)
    key = f"{ratelimit.KEY_PREFIX}:secrets:read:{who}"
    assert first.hit("secrets:read", who).allowed
    slice_ = int(1000 * ratelimit.LEASE_FRACTION)
    assert shared_level(first, key) == pytest.approx(1000 - 1 - slice_, abs=1)
    for lease in first._leases.values():
        lease.expires = 0.0
    assert first.reconcile() == 1
    assert shared_level(first, key) == pytest.approx(999, abs=1)
    # the other instance sees every token but the one spent
    assert second.hit("secrets:read", who).remaining >= 998 - slice_


def test_the_runtime_and_the_limiter_share_one_redis_pool(make_app):
    app = make_app(RATE_LIMITS=LARGE)
    limits = app.extensions["scaivault_rate_limits"]
    runtime = app.extensions["scaivault"]
    assert limits.limiter.storage.get_connection().connection_pool is runtime.redis.connection_pool
