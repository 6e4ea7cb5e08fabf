"""Concurrent writers and cross-instance policy invalidation (design invariants 5 and 6)."""
from __future__ import annotations

import threading
import time


from tests.secrets_support import HIGH_RATE_LIMITS, Callers, grant, new_tenant


def test_twenty_concurrent_writers_to_one_path_get_versions_1_to_20_exactly(make_app, scaikey):
    # two app instances (two pools, like two gunicorn workers), ten threads each
    apps = [make_app(RATE_LIMITS=HIGH_RATE_LIMITS, SECRET_MAX_VERSIONS_DEFAULT="100") for _ in range(2)]
    tenant = new_tenant()
    writers = [Callers(scaikey, apps[i % 2].test_client()).admin(tenant) for i in range(20)]
    barrier = threading.Barrier(20)
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        barrier.wait()
        resp = writers[i].put("/v1/secrets/race/one/path", json={"data": {"writer": i}})
        with lock:
            results.append((resp.status_code, (resp.get_json() or {}).get("version") or resp.get_json()))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(v, int) for _, v in results), results
    assert sorted(v for _, v in results) == list(range(1, 21)), results
    assert sorted(s for s, _ in results) == [200] * 19 + [201]
    rows = apps[0].extensions["scaivault"].db.query(
        "SELECT v.version FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
        "WHERE s.tenant_id = :t AND s.path = 'race/one/path' ORDER BY v.version", t=tenant)
    assert [r["version"] for r in rows] == list(range(1, 21))
    versions = writers[0].get("/v1/secrets/race/one/path:versions").get_json()
    assert versions["current_version"] == 20


def test_concurrent_cas_creates_let_exactly_one_writer_win(make_app, scaikey):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    writers = [Callers(scaikey, app.test_client()).admin(tenant) for _ in range(8)]
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def write(caller) -> None:
        barrier.wait()
        codes.append(caller.put("/v1/secrets/race/cas", json={"data": {"k": 1}, "options": {"cas": 0}}).status_code)

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [201] + [409] * 7


def _wait_for(predicate, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not seen within {timeout}s")


def test_a_policy_change_on_one_instance_takes_effect_on_another_within_one_second(make_app, scaikey):
    first, second = make_app(RATE_LIMITS=HIGH_RATE_LIMITS), make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    admin = Callers(scaikey, first.test_client()).admin(tenant)
    admin.put("/v1/secrets/inv/a", json={"data": {"k": "v"}})
    user = Callers(scaikey, second.test_client()).user("inv@acme.example", tenant)
    assert user.get("/v1/secrets/inv/a").status_code == 403
    cache = second.extensions["scaivault"].policy_cache
    loads = cache.loads
    assert user.get("/v1/secrets/inv/a").status_code == 403
    assert cache.loads == loads                              # the second check came from the cache

    policy_id = grant(admin, user.identity_id, [{"path_pattern": "inv/*", "permissions": ["read"]}])
    granted_after = _wait_for(lambda: user.get("/v1/secrets/inv/a").status_code == 200, 1.0)

    binding_id = admin.get(f"/v1/policies/{policy_id}/bindings").get_json()["bindings"][0]["id"]
    assert admin.delete(f"/v1/policies/{policy_id}/bindings/{binding_id}").status_code == 200
    revoked_after = _wait_for(lambda: user.get("/v1/secrets/inv/a").status_code == 403, 1.0)
    assert granted_after < 1.0 and revoked_after < 1.0
