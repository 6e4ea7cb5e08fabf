"""REDIS_URL=redis+cluster://...: the service on a real local 3-node Redis Cluster (redis-servers
with --cluster-enabled yes, joined by `redis-cli --cluster create`, no replicas).

Every multi-key operation keeps its keys on one slot (hash tags), the limiter's storage rides the
runtime's cluster client, limits hold across instances, a policy change reaches another
instance, and a node down makes readiness `degraded` (200) while requests keep succeeding.
"""
from __future__ import annotations

import secrets
import time

import pytest
import redis as redis_py

from scaivault import ratelimit
from scaivault.config import ConfigError, load_settings
from scaivault.policy.cache import epoch_keys
from scaivault.redis_store import LazyRedisCluster, parse_cluster_url
from tests.drills.harness import PrivateRedisCluster
from tests.secrets_support import Callers, grant, new_tenant

pytestmark = pytest.mark.slow


def limits_with(**rates: int) -> str:
    """RATE_LIMITS with every category high except the ones named (per minute)."""
    named = {k.replace("__", ":"): v for k, v in rates.items()}
    return "\n".join(f"{c}: {{rate: {named.get(c, 100000)}, window: 1m}}" for c in ratelimit.CATEGORIES)


@pytest.fixture(scope="module")
def cluster():
    c = PrivateRedisCluster().start()
    yield c
    c.stop()


def keyslot(cluster, key: str) -> int:
    return redis_py.Redis(port=cluster.nodes[0].port).cluster("keyslot", key)


def cluster_keys(cluster, pattern: str) -> list[bytes]:
    return [k for n in cluster.nodes for k in redis_py.Redis(port=n.port).keys(pattern)]


@pytest.mark.parametrize("url, fragment", [
    ("redis+cluster://127.0.0.1", "host:port"),
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:x", "host:port"),
    ("redis+cluster://127.0.0.1:7000/3", "database 0"),
])
def test_a_malformed_cluster_url_is_refused_at_start(base_env, url, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings({**base_env, "REDIS_URL": url})
    assert info.value.variable == "REDIS_URL" and fragment in info.value.problem


def test_a_cluster_url_names_its_nodes_and_password():
    nodes, user, password = parse_cluster_url("redis+cluster://:s%40cret@10.0.0.1:7000,10.0.0.2:7001/0")
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)] and user is None and password == "s@cret"


def test_the_policy_counters_of_one_scope_share_a_slot(cluster):
    for tenant, partner in (("tnt_a", "ptn_a"), ("tnt_zz9", "ptn_other"), (None, "ptn_a"), ("tnt_b", None)):
        slots = {keyslot(cluster, k) for k in epoch_keys(tenant, partner)}
        assert len(slots) == 1, (tenant, partner, slots)
    # without the tag these two would be on different slots: the MGET would be refused
    assert keyslot(cluster, "scaivault:policy_epoch:p:ptn_a") != keyslot(cluster, "scaivault:policy_epoch:t:tnt_a")


def test_a_cluster_that_is_down_at_start_does_not_stop_the_app(make_app, scaikey):
    app = make_app(REDIS_URL="redis+cluster://127.0.0.1:1,127.0.0.1:2", RATE_LIMITS=limits_with())
    client = app.test_client()
    ready = client.get("/v1/health/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "degraded", ready.get_json()
    caller = Callers(scaikey, client).admin(new_tenant())
    assert caller.put("/v1/secrets/down", json={"data": {"v": 1}}).status_code == 201
    assert caller.get("/v1/secrets/down").status_code == 200


def test_reads_writes_and_limits_on_the_cluster_with_one_client_per_process(make_app, scaikey, cluster):
    app = make_app(REDIS_URL=cluster.url, RATE_LIMITS=limits_with())
    runtime = app.extensions["scaivault"]
    client = app.test_client()
    ready = client.get("/v1/health/ready").get_json()
    assert ready["status"] == "ready" and ready["checks"]["redis"] == "ok", ready
    assert isinstance(runtime.redis, LazyRedisCluster)
    limits = app.extensions["scaivault_rate_limits"]
    # the limiter's storage is limits' cluster storage over the runtime's client: one set of pools
    assert limits.limiter.storage.get_connection() is runtime.redis
    assert limits.status() == {"status": "ok", "storage": "redis+cluster"}
    caller = Callers(scaikey, client).admin(new_tenant())
    for i in range(20):
        assert caller.put(f"/v1/secrets/c/{i}", json={"data": {"v": i}}).status_code == 201
    for i in range(20):
        assert caller.get(f"/v1/secrets/c/{i}").get_json()["data"] == {"v": i}
    buckets = cluster_keys(cluster, "scaivault:rl:*")
    assert buckets, "no rate-limit bucket in the cluster"
    # the buckets spread over the nodes' slots (single-key scripts route by their key)
    assert len({keyslot(cluster, k.decode()) for k in buckets}) > 1


def test_five_a_minute_gives_429_on_the_sixth_across_two_instances(make_app, scaikey, cluster):
    rates = limits_with(secrets__read=5)
    first, second = make_app(REDIS_URL=cluster.url, RATE_LIMITS=rates), make_app(REDIS_URL=cluster.url, RATE_LIMITS=rates)
    tenant = new_tenant()
    writer = Callers(scaikey, first.test_client()).admin(tenant)
    assert writer.put("/v1/secrets/limited", json={"data": {"v": 1}}).status_code == 201
    reader = Callers(scaikey, first.test_client()).user("reader@x.example", tenant, role="tenant_admin")
    clients = (first.test_client(), second.test_client())
    statuses = [clients[i % 2].get("/v1/secrets/limited", headers={"Authorization": f"Bearer {reader.token}"})
                for i in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429], [r.get_json() for r in statuses]
    assert statuses[-1].get_json()["error"]["code"] == "rate_limited"
    for app in (first, second):
        assert app.extensions["scaivault_rate_limits"].status()["status"] == "ok"


def test_leased_slices_of_a_large_bucket_never_admit_more_than_it_holds(make_app, cluster):
    large = "secrets:read:\n  rate: 1000\n  window: 1h\n"
    two = [make_app(REDIS_URL=cluster.url, RATE_LIMITS=large).extensions["scaivault_rate_limits"] for _ in range(2)]
    who = "usr_" + secrets.token_hex(4)
    started = time.monotonic()
    admitted = sum(two[i % 2].hit("secrets:read", who).allowed for i in range(1300))
    elapsed = time.monotonic() - started
    assert not any(limits._fallback for limits in two), "the cluster was not used"
    assert admitted <= 1000 + int(1000 / 3600 * (elapsed + ratelimit.LEASE_SECONDS)) + 1
    assert admitted >= 1000 - 2 * int(1000 * ratelimit.LEASE_FRACTION)
    for limits in two:                                # unused slices go back to the shared bucket
        limits._leases and [setattr(lease, "expires", 0) for lease in limits._leases.values()]
        limits.reconcile()
    assert cluster_keys(cluster, f"scaivault:rl:secrets:read:{who}")


def test_a_policy_change_on_one_instance_reaches_another_through_the_cluster(make_app, scaikey, cluster):
    rates = limits_with()
    first, second = make_app(REDIS_URL=cluster.url, RATE_LIMITS=rates), make_app(REDIS_URL=cluster.url, RATE_LIMITS=rates)
    tenant = new_tenant()
    admin = Callers(scaikey, first.test_client()).admin(tenant)
    admin.put("/v1/secrets/inv/a", json={"data": {"k": "v"}})
    user = Callers(scaikey, second.test_client()).user("inv@cluster.example", tenant)
    cache = second.extensions["scaivault"].policy_cache
    assert user.get("/v1/secrets/inv/a").status_code == 403
    loads = cache.loads
    assert user.get("/v1/secrets/inv/a").status_code == 403
    assert cache.loads == loads                              # cached: the epoch MGET worked on the cluster
    policy_id = grant(admin, user.identity_id, [{"path_pattern": "inv/*", "permissions": ["read"]}])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and user.get("/v1/secrets/inv/a").status_code != 200:
        time.sleep(0.05)
    assert user.get("/v1/secrets/inv/a").status_code == 200
    binding_id = admin.get(f"/v1/policies/{policy_id}/bindings").get_json()["bindings"][0]["id"]
    assert admin.delete(f"/v1/policies/{policy_id}/bindings/{binding_id}").status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and user.get("/v1/secrets/inv/a").status_code != 403:
        time.sleep(0.05)
    assert user.get("/v1/secrets/inv/a").status_code == 403
    partner = "ptn_test"
    assert redis_py.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port).get(epoch_keys(tenant, partner)[-1]), \
        "the tenant's counter was not bumped"


def test_a_node_restart_makes_readiness_degraded_not_failed(make_app, scaikey, cluster):
    app = make_app(REDIS_URL=cluster.url, RATE_LIMITS=limits_with())
    client = app.test_client()
    caller = Callers(scaikey, client).admin(new_tenant())
    assert caller.put("/v1/secrets/n/0", json={"data": {"v": 0}}).status_code == 201
    assert client.get("/v1/health/ready").get_json()["checks"]["redis"] == "ok"
    victim = cluster.nodes[1]
    victim.stop()
    try:
        deadline = time.monotonic() + 20
        seen = None
        while time.monotonic() < deadline:
            response = client.get("/v1/health/ready")
            seen = (response.status_code, response.get_json())
            if seen[1]["checks"]["redis"] != "ok":
                break
            time.sleep(0.1)
        assert seen[0] == 200 and seen[1]["status"] == "degraded" and seen[1]["checks"]["redis"] == "degraded", seen
        # requests keep succeeding: the limiter counts in memory, policies come from the database
        for i in range(1, 11):
            assert caller.put(f"/v1/secrets/n/{i}", json={"data": {"v": i}}).status_code == 201
            assert caller.get(f"/v1/secrets/n/{i}").get_json()["data"] == {"v": i}
    finally:
        victim.start()
    cluster.wait_ok()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and client.get("/v1/health/ready").get_json()["status"] != "ready":
        time.sleep(0.2)
    assert client.get("/v1/health/ready").get_json()["status"] == "ready"
    assert caller.get("/v1/secrets/n/10").status_code == 200


def test_scaivault_serve_workers_use_the_cluster_after_fork(base_env, scaikey, cluster):
    """Two forked workers, each warmed (its own cluster client built after fork) and serving."""
    import requests

    from tests.drills.harness import Instance

    instance = Instance({**base_env, "REDIS_URL": cluster.url, "RATE_LIMITS": limits_with(secrets__read=5),
                         "LOG_LEVEL": "info"}, workers=2).start()
    try:
        ready = requests.get(instance.url + "/v1/health/ready", timeout=10).json()
        assert ready["status"] == "ready" and ready["checks"]["redis"] == "ok", ready
        token = scaikey.mint(sub="usr_" + secrets.token_hex(4), email="served@cluster.example", tenant_id=new_tenant(),
                             partner_id="ptn_test", scopes=("secrets:read", "secrets:write"), role="tenant_admin")
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.put(instance.url + "/v1/secrets/served", json={"data": {"v": 1}}, headers=headers,
                            timeout=10).status_code == 201
        # new connections each time: the requests are spread over both workers; the limit holds for all
        statuses = [requests.get(instance.url + "/v1/secrets/served", headers=headers, timeout=10).status_code
                    for _ in range(6)]
        assert statuses == [200] * 5 + [429], statuses
        warmed = [line for line in instance.log().splitlines() if "worker warmed up" in line]
        assert len(warmed) >= 2 and all("failed_steps=[]" in line for line in warmed), instance.log()[-2000:]
    finally:
        instance.cleanup()
