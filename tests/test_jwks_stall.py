"""Issue 9 F10 and design.md invariant 12 (nothing a tenant controls can stall a worker for others):
with ScaiKey unresponsive, logins must not queue behind one another on a process-wide lock.

Before the fix, four new logins against a stalled ScaiKey answered after 5.8, 10.6, 15.4 and
20.6 s (one 5 s timeout each, in a row, failures not remembered). Now one caller fetches while
the others wait for its result (single flight), a failure is remembered (negative cache with
backoff), and stale keys are served while a background refresh runs.
"""
from __future__ import annotations

import threading
import time

import jwt
import pytest

from tests.scaikey_standin import ScaiKeyStandin

TIMEOUT = 1.0      # the cache's HTTP timeout in these tests (5 s in production)
STALL = 4.0        # how long the stalled ScaiKey takes to answer: longer than the timeout
LOGINS = 6


@pytest.fixture
def standin():
    server = ScaiKeyStandin().start()
    yield server
    server.stall_seconds = 0.0
    server.stop()


def _app(make_app, standin):
    app = make_app(SCAIKEY_URL=standin.url)
    app.extensions["scaivault"].authenticator.jwks.http_timeout = TIMEOUT
    return app


def _concurrent_logins(app, tokens: list[str]) -> list[tuple[int, float]]:
    """Send each token to /v1/auth/whoami on its own thread at once; (status, seconds) per login."""
    results: list[tuple[int, float]] = [(0, 0.0)] * len(tokens)
    start = threading.Barrier(len(tokens))

    def login(i: int, token: str) -> None:
        client = app.test_client()
        start.wait()
        began = time.perf_counter()
        status = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"}).status_code
        results[i] = (status, time.perf_counter() - began)

    threads = [threading.Thread(target=login, args=(i, t)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _jwks_requests(standin) -> int:
    return sum(1 for _, path in standin.requests if path.endswith("/jwks.json") or path.endswith("/openid-configuration"))


def test_concurrent_first_logins_against_a_stalled_scaikey_answer_within_one_timeout(make_app, standin):
    app = _app(make_app, standin)
    standin.stall_seconds = STALL
    tokens = [standin.mint(sub=f"usr_stall_{i}", tenant_id="tnt_stall") for i in range(LOGINS)]
    results = _concurrent_logins(app, tokens)
    assert all(status == 503 for status, _ in results), results
    slowest = max(seconds for _, seconds in results)
    assert slowest < 2 * TIMEOUT + 1.0, results                 # serialised, it would be >= LOGINS timeouts
    assert _jwks_requests(standin) == 1                         # one discovery attempt for all of them

    # the failure is remembered: the next login answers at once, without asking ScaiKey again
    began = time.perf_counter()
    status = app.test_client().get("/v1/auth/whoami", headers={"Authorization": f"Bearer {tokens[0]}"}).status_code
    assert status == 503 and time.perf_counter() - began < 0.5
    assert _jwks_requests(standin) == 1

    # ScaiKey recovers: after the backoff (1 s after a first failure) logins work again
    standin.stall_seconds = 0.0
    time.sleep(1.1)
    assert app.test_client().get("/v1/auth/whoami",
                                 headers={"Authorization": f"Bearer {tokens[0]}"}).status_code == 200


def test_concurrent_logins_with_an_unknown_kid_share_one_fetch(make_app, standin):
    app = _app(make_app, standin)
    client = app.test_client()
    assert client.get("/v1/auth/whoami", headers={
        "Authorization": "Bearer " + standin.mint(sub="usr_kid0", tenant_id="tnt_stall")}).status_code == 200
    before = _jwks_requests(standin)
    old_key = standin.current_key("RS256")
    standin.rotate(keep_old=False)                 # new kids the process has not seen
    standin.stall_seconds = STALL
    tokens = [standin.mint(sub=f"usr_kid_{i}", tenant_id="tnt_stall", alg="ES256") for i in range(LOGINS)]
    results = _concurrent_logins(app, tokens)
    assert all(status == 401 for status, _ in results), results     # the refetch timed out: unknown key
    assert max(seconds for _, seconds in results) < 2 * TIMEOUT + 1.0, results
    assert _jwks_requests(standin) == before + 1
    # a kid the process knows is unaffected by the stalled ScaiKey
    known = jwt.encode({"iss": standin.issuer, "aud": "scaivault", "sub": "usr_kid_known", "tenant_id": "tnt_stall",
                        "exp": int(time.time()) + 60}, old_key.private_key, algorithm="RS256",
                       headers={"kid": old_key.kid})
    began = time.perf_counter()
    assert client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {known}"}).status_code == 200
    assert time.perf_counter() - began < 0.5


def test_stale_keys_are_served_while_a_background_refresh_runs(make_app, standin):
    app = _app(make_app, standin)
    client = app.test_client()
    token = standin.mint(sub="usr_swr", tenant_id="tnt_stall")
    assert client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    jwks = app.extensions["scaivault"].authenticator.jwks
    jwks._fetched_at -= 601                        # the keys are now older than the 10-minute refresh
    before = _jwks_requests(standin)
    standin.stall_seconds = STALL
    fresh = standin.mint(sub="usr_swr2", tenant_id="tnt_stall")
    began = time.perf_counter()
    assert client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    assert time.perf_counter() - began < 0.5       # answered from the stale keys, not after the stall
    deadline = time.monotonic() + 2
    while _jwks_requests(standin) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _jwks_requests(standin) == before + 1   # the refresh happened, in the background
