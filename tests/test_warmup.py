"""A new worker's warm-up does what it claims (scaivault.warmup): every pooled connection has the
hot statements prepared and has run the read path (rolled back, nothing left behind), the
per-process snapshots are loaded, and the policies of recently active identities are compiled
before the first request. No timing here: bench/first_read_respawn.py measures the effect."""
from __future__ import annotations

import json

import pg8000.native

from scaivault.policy.cache import RECENT_KEY
from scaivault.warmup import WARMUP_KEY, hot_statements, warm_worker
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, grant, new_tenant


def pooled_connections(runtime) -> list:
    pool = runtime.db.pool()
    conns = [pool.checkout() for _ in range(pool.size)]
    for conn in conns:
        pool.checkin(conn)
    return conns


def test_every_pooled_connection_has_the_hot_statements_prepared(make_app):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    runtime = app.extensions["scaivault"]
    report = warm_worker(runtime, 15, app.extensions["scaivault_rate_limits"], app)
    assert report["done"] and not report["errors"], report
    assert report["routes"] == len(list(app.url_map.iter_rules())) and report["snapshots"] is True
    assert runtime.federation._mappings._loaded > 0          # the snapshot a read consults is loaded
    conns = pooled_connections(runtime)
    assert len(conns) == report["database"] == runtime.db.pool().size
    for conn in conns:
        assert set(hot_statements()) <= set(conn.__dict__.get("_scaivault_prepared", {}))
        # the server agrees: the statements are prepared in that backend, and no transaction is left open
        assert conn.run("SELECT count(*) FROM pg_prepared_statements")[0][0] >= len(hot_statements())
        assert conn.run("SELECT now() = statement_timestamp()")[0][0] is True


def test_the_warm_up_read_path_leaves_nothing_behind(make_app, database_url):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    assert warm_worker(app.extensions["scaivault"], 15)["done"]
    url = database_url.split("?")[0].rsplit("/", 1)
    conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=5432, database=url[1])
    try:
        assert conn.run("SELECT count(*) FROM audit_log WHERE tenant_id = :t", t=WARMUP_KEY)[0][0] == 0
        assert conn.run("SELECT count(*) FROM audit_chain_heads WHERE chain_key = :t", t=WARMUP_KEY)[0][0] == 0
        assert conn.run("SELECT count(*) FROM secrets WHERE path = :t", t=WARMUP_KEY)[0][0] == 0
    finally:
        conn.close()


def test_a_new_worker_compiles_the_policies_of_recently_active_identities(make_app, scaikey):
    first = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    admin = Callers(scaikey, first.test_client()).admin(tenant)
    assert admin.put("/v1/secrets/warm/a", json={"data": {"v": 1}}).status_code == 201
    user = Callers(scaikey, first.test_client()).user("warm@warm.example", tenant)
    grant(admin, user.identity_id, [{"path_pattern": "warm/*", "permissions": ["read"]}])
    assert user.get("/v1/secrets/warm/a").status_code == 200      # the first process loads and notes the scope

    second = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    runtime = second.extensions["scaivault"]
    report = warm_worker(runtime, 15)
    assert report["policies"]["policy_sets"] >= 1 and report["policies"]["tenants"] >= 1, report
    cache = runtime.policy_cache
    loads = cache.loads
    user.client = second.test_client()
    assert user.get("/v1/secrets/warm/a").status_code == 200
    assert cache.loads == loads, "the first read of a warmed worker loaded its policies again"
    # the warm-up replays the list without noting it again (it would never age out)
    scores = dict(runtime.redis.zrange(RECENT_KEY, 0, -1, withscores=True))
    member = json.dumps([tenant, "ptn_test", [user.identity_id]], separators=(",", ":")).encode()
    assert member in scores


def test_malformed_hints_are_skipped(make_app):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    cache = app.extensions["scaivault"].policy_cache
    redis = app.extensions["scaivault"].redis
    bad = ["not json", json.dumps({"a": 1}), json.dumps([1, 2, 3]), json.dumps(["t", "p", []]),
           json.dumps(["t", "p", ["x" * 600]])]
    redis.zadd(RECENT_KEY, {member: 9e12 for member in bad})      # newest of all
    try:
        scopes = cache.recent_scopes(len(bad) + 50)
        assert all(isinstance(ids, tuple) and ids and all(len(i) <= 512 for i in ids) for _, _, ids in scopes)
        assert not any(t == "t" for t, _, _ in scopes)
    finally:
        redis.zrem(RECENT_KEY, *bad)
