"""A stalled KMS fails fast: attempts per call, single-flight unwraps, the circuit breaker, the
grace period, failover to the secondary key, and a fresh worker answering kms_unavailable.

The KMS is a real moto_server process paused with SIGSTOP (connections are accepted by the
kernel and never answered, as a stalled KMS does), or a black-hole TCP server that counts
the requests it is sent.
"""
from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

from scaivault.crypto import KmsUnavailable, SealContext
from scaivault.plugins import select
from tests.drills.harness import BlackHole, Instance, MotoProcess
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for

TIMEOUT = 1.0     # KMS_TIMEOUT of these tests: one attempt against a paused KMS costs this long


@pytest.fixture(scope="module")
def moto():
    server = MotoProcess().start()
    yield server
    server.stop()


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


def _settings(base_env, db_url, moto, key_id, **extra):
    env = {"KMS_LOCAL_KEY_FILE": None, "KMS_TIMEOUT": str(TIMEOUT), "KMS_RETRIES": "1", **moto.env(key_id), **extra}
    return settings_for(base_env, db_url, **env)


def _paused(moto):
    class Paused:
        def __enter__(self):
            moto.pause()

        def __exit__(self, *exc):
            moto.resume()
    return Paused()


@pytest.mark.parametrize("provider, extra", [
    ("aws", {"KMS_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/0000", "KMS_REGION": "us-east-1",
             "KMS_ACCESS_KEY_ID": "testing", "KMS_SECRET_ACCESS_KEY": "testing"}),
    ("hashicorp", {"KMS_KEY_NAME": "root"}),
    ("gcp", {"KMS_KEY_NAME": "projects/p/locations/global/keyRings/r/cryptoKeys/k"}),
])
def test_kms_retries_is_the_number_of_attempts_per_call_in_every_provider(base_env, db_url, provider, extra):
    hole = BlackHole()
    try:
        settings = settings_for(base_env, db_url, KMS_PROVIDER=provider, KMS_ENDPOINT=hole.url, KMS_TIMEOUT="0.5",
                                KMS_RETRIES="2", KMS_LOCAL_KEY_FILE=None, **extra)
        kms = select("scaivault_kms_providers", provider).factory(settings, None)
        started = time.monotonic()
        with pytest.raises(KmsUnavailable):
            kms.unwrap(b"x" * 64, b"aad")
        elapsed = time.monotonic() - started
        time.sleep(0.2)
        assert hole.requests == 2, f"{provider}: {hole.requests} requests for KMS_RETRIES=2"
        assert elapsed < 2 * 0.5 + 2.0
        kms.close()
    finally:
        hole.close()


def test_concurrent_requests_share_one_bounded_unwrap_then_fail_fast_while_the_kms_is_paused(
        base_env, db_url, moto, caplog):
    key_id = moto.create_key()
    ring, calls = counting_keyring(_settings(base_env, db_url, moto, key_id, KMS_CACHE_TTL="1s", KMS_CACHE_GRACE="0s"))
    ctx = SealContext("ptn_stall", "tnt_stall", "secret", "a/b", 1)
    sealed = ring.seal(ctx, b"value")
    ring.breaker(key_id).probe_interval = 0.3
    time.sleep(1.1)                       # every cached key has expired
    before = calls["unwrap"]
    outcomes: list[tuple[str, float]] = []

    def reader():
        started = time.monotonic()
        try:
            ring.open(ctx, sealed)
            outcomes.append(("ok", time.monotonic() - started))
        except KmsUnavailable:
            outcomes.append(("kms_unavailable", time.monotonic() - started))

    with caplog.at_level(logging.WARNING, logger="scaivault.crypto"), _paused(moto):
        threads = [threading.Thread(target=reader) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # one KMS call for all eight, every waiter released when it failed
        assert [o for o, _ in outcomes] == ["kms_unavailable"] * 8
        assert max(s for _, s in outcomes) < TIMEOUT + 1.5, outcomes
        assert calls["unwrap"] - before == 1
        # the breaker is open: the next request fails at once, without a KMS call
        started = time.monotonic()
        with pytest.raises(KmsUnavailable):
            ring.open(ctx, sealed)
        assert time.monotonic() - started < 0.2
        assert calls["unwrap"] - before == 1
        assert any("circuit breaker open" in r.getMessage() for r in caplog.records)
    # resumed: the background probe closes the breaker and reads work again
    deadline = time.monotonic() + 10
    while ring.breaker(key_id).is_open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ring.open(ctx, sealed) == b"value"
    ring.close()
    ring.db.close()


def test_keys_stay_usable_past_the_cache_ttl_within_the_grace_period(base_env, db_url, moto):
    key_id = moto.create_key()
    ring, calls = counting_keyring(_settings(base_env, db_url, moto, key_id, KMS_CACHE_TTL="1s",
                                             KMS_CACHE_GRACE="1h"))
    ctx = SealContext("ptn_grace", "tnt_grace", "secret", "g", 1)
    sealed = ring.seal(ctx, b"still readable")
    time.sleep(1.1)
    with _paused(moto):
        started = time.monotonic()
        assert ring.open(ctx, sealed) == b"still readable"       # one bounded attempt, then the cached key
        assert time.monotonic() - started < TIMEOUT + 1.5
        time.sleep(1.1)
        started = time.monotonic()
        assert ring.open(ctx, sealed) == b"still readable"       # breaker open: no wait at all
        assert time.monotonic() - started < 0.2
        assert ring.health()["status"] == "degraded"
    ring.close()
    ring.db.close()


def test_without_grace_an_expired_key_is_not_used_when_the_kms_is_down(base_env, db_url, moto):
    key_id = moto.create_key()
    ring, _ = counting_keyring(_settings(base_env, db_url, moto, key_id, KMS_CACHE_TTL="1s", KMS_CACHE_GRACE="0s"))
    ctx = SealContext("ptn_nograce", "tnt_nograce", "secret", "g", 1)
    sealed = ring.seal(ctx, b"v")
    time.sleep(1.1)
    with _paused(moto), pytest.raises(KmsUnavailable):
        ring.open(ctx, sealed)
    ring.close()
    ring.db.close()


def test_a_paused_primary_fails_over_to_the_secondary_key(base_env, db_url, moto):
    primary_kms = MotoProcess().start()
    try:
        primary = primary_kms.create_key()
        secondary = moto.create_key()
        extra = {"KMS_KEY_ID_SECONDARY": secondary, "KMS_ENDPOINT_SECONDARY": moto.url}
        ring, _ = counting_keyring(_settings(base_env, db_url, primary_kms, primary, **extra))
        ctx = SealContext("ptn_fo", "tnt_fo", "secret", "fo", 1)
        sealed = ring.seal(ctx, b"survives")
        ring.close()
        cold, _ = counting_keyring(_settings(base_env, db_url, primary_kms, primary, **extra))
        with _paused(primary_kms):
            started = time.monotonic()
            assert cold.open(ctx, sealed) == b"survives"
            assert time.monotonic() - started < 2 * TIMEOUT + 2.0
            assert cold.health()["status"] in ("degraded", "error")   # the probe itself may still be waiting
        cold.close()
        ring.db.close()
        cold.db.close()
    finally:
        primary_kms.stop()


@pytest.mark.slow
def test_a_respawned_worker_answers_503_kms_unavailable_not_500_while_the_kms_is_paused(
        base_env, fresh_database_url, moto, scaikey):
    key_id = moto.create_key()
    env = {**base_env, "DATABASE_URL": fresh_database_url, **moto.env(key_id), "KMS_TIMEOUT": str(TIMEOUT),
           "KMS_RETRIES": "1", "WORKER_WARMUP_TIMEOUT": "3s"}
    env.pop("KMS_LOCAL_KEY_FILE")
    instance = Instance(env, workers=1).start()
    try:
        token = scaikey.mint(sub="usr_kms", email="kms@t.example", tenant_id="tnt_kmsw", partner_id="ptn_kmsw",
                             scopes=("secrets:read", "secrets:write"), role="tenant_admin")
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.put(instance.url + "/v1/secrets/k/v", json={"data": {"v": 1}}, headers=auth,
                            timeout=10).status_code == 201
        old = instance.worker_pids()
        with _paused(moto):
            import os
            import signal

            os.kill(old[0], signal.SIGKILL)
            instance.wait_workers(1, exclude=tuple(old))
            started = time.monotonic()
            response = requests.get(instance.url + "/v1/secrets/k/v", headers=auth, timeout=30)
            waited = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "kms_unavailable"
            assert waited < 3 + TIMEOUT + 2.0
            ready = requests.get(instance.url + "/v1/health/ready", timeout=10)
            assert ready.status_code == 503 and ready.json()["checks"]["encryption"] == "error"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = requests.get(instance.url + "/v1/secrets/k/v", headers=auth, timeout=10)
            if response.status_code == 200:
                break
            time.sleep(0.2)
        assert response.status_code == 200
    finally:
        instance.cleanup()
