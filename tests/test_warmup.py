"""A new worker's warm-up does what it claims (scaivault.warmup): every pooled connection has the
hot statements prepared and has run the read path (rolled back, nothing left behind), the
per-process snapshots are loaded, and the policies of recently active identities are compiled
before the first request. No timing here: bench/first_read_respawn.py measures the effect."""
from __future__ import annotations

import json

import pg8000.native

from scaivault.policy.cache import RECENT_KEY, epoch_keys
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


# ----------------------------------------------------------------------------- identity rows (issue 18)
IDENTITY_TABLES = ("identity_users", "identity_tenants", "identity_role_assignments", "identity_group_members",
                   "identity_applications")


class Statements:
    """Every statement this process sends to PostgreSQL while active (pg8000's three ways to send one)."""

    def __init__(self, monkeypatch):
        import pg8000.core as core

        self.seen: list[str] = []
        unnamed, named, simple = (core.CoreConnection.execute_unnamed, core.CoreConnection.execute_named,
                                  core.CoreConnection.execute_simple)
        monkeypatch.setattr(core.CoreConnection, "execute_unnamed",
                            lambda conn, sql, *a, **k: (self.seen.append(sql), unnamed(conn, sql, *a, **k))[1])
        monkeypatch.setattr(core.CoreConnection, "execute_named",
                            lambda conn, name, params, columns, funcs, sql: (self.seen.append(sql),
                                                                             named(conn, name, params, columns, funcs, sql))[1])
        monkeypatch.setattr(core.CoreConnection, "execute_simple",
                            lambda conn, sql: (self.seen.append(sql), simple(conn, sql))[1])

    def touching_identities(self) -> list[str]:
        return [sql for sql in self.seen if any(table in sql for table in IDENTITY_TABLES)]


def _hinted_user(make_app, scaikey):
    """A user with a policy, seen by a first process (which notes its identity rows and policies)."""
    first = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    admin = Callers(scaikey, first.test_client()).admin(tenant)
    assert admin.put("/v1/secrets/warm/a", json={"data": {"v": 1}}).status_code == 201
    user = Callers(scaikey, first.test_client()).user(f"rows-{tenant}@warm.example", tenant)
    grant(admin, user.identity_id, [{"path_pattern": "warm/*", "permissions": ["read"]}])
    assert user.get("/v1/secrets/warm/a").status_code == 200
    return first, tenant, user


def test_a_new_worker_reads_the_identity_rows_of_recently_active_principals(make_app, scaikey, monkeypatch):
    _first, tenant, user = _hinted_user(make_app, scaikey)
    second = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    runtime = second.extensions["scaivault"]
    cache = runtime.policy_cache
    epochs = cache.redis.mget(epoch_keys(tenant, "ptn_test"))
    report = warm_worker(runtime, 15)
    assert report["identities"]["principals"] >= 1 and report["identities"]["hinted"] >= 1, report
    # a NEW token of the warmed principal (never seen by this process): its signature is checked, but
    # not one statement reads an identity table, and the policies are not loaded again
    user.token = scaikey.mint(sub=user_sub(user), email=user.identity_id[5:], tenant_id=tenant, partner_id="ptn_test",
                              scopes=("secrets:read",))
    user.client = second.test_client()
    loads = runtime.policy_cache.loads
    statements = Statements(monkeypatch)
    assert user.get("/v1/secrets/warm/a").status_code == 200
    assert statements.seen, "the read itself must reach the database"
    assert statements.touching_identities() == [], statements.touching_identities()
    # a reload is right only when the policies changed since the warm-up: the partner's counter is
    # shared by every test tenant, and an earlier test's background job may bump it meanwhile
    if cache.redis.mget(epoch_keys(tenant, "ptn_test")) == epochs:
        assert cache.loads == loads


def test_a_principal_not_warmed_is_read_in_one_statement(make_app, scaikey, monkeypatch):
    """A brand-new identity: its tenant, user, groups and grants in one statement, not four or five."""
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    admin = Callers(scaikey, app.test_client()).admin(tenant)
    assert admin.get("/v1/auth/whoami").status_code == 200          # the tenant exists (just in time) from here on
    user = Callers(scaikey, app.test_client()).user(f"new-{tenant}@warm.example", tenant)
    statements = Statements(monkeypatch)
    assert user.get("/v1/auth/whoami").status_code == 200
    touching = statements.touching_identities()
    assert len(touching) == 1 and "jsonb_to_recordset" in touching[0], touching     # the identity rows statement


def test_a_user_suspended_after_the_warm_up_is_refused(make_app, scaikey):
    """Warmed rows are dropped with the auth epoch like every derived identity: a suspension applied
    by another process is honoured within the same bound as before (one epoch check, 0.5 s)."""
    import time

    from scaivault.auth.epoch import EPOCH_CHECK_SECONDS
    from tests.test_identity_webhooks import _deliver

    first, tenant, user = _hinted_user(make_app, scaikey)
    sub = user_sub(user)
    receiver = first.test_client()
    created = _deliver(receiver, scaikey, "user.created", {"id": sub, "email": user.identity_id[5:], "status": "ACTIVE"},
                       tenant_id=tenant)
    assert created.status_code == 200, created.get_json()
    assert user.get("/v1/secrets/warm/a").status_code == 200          # noted with its (now cached) user row

    second = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    runtime = second.extensions["scaivault"]
    assert warm_worker(runtime, 15)["identities"]["principals"] >= 1
    key = ("user", sub, None, tenant)
    assert key in runtime.authenticator._rows and runtime.authenticator._rows[key][0].user["status"] == "ACTIVE"

    assert _deliver(receiver, scaikey, "user.suspended", {"id": sub}).status_code == 200
    time.sleep(EPOCH_CHECK_SECONDS + 0.1)
    user.client = second.test_client()
    resp = user.get("/v1/secrets/warm/a")
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked", resp.get_json()


def test_a_user_suspended_before_the_warm_up_is_refused(make_app, scaikey):
    from tests.test_identity_webhooks import _deliver

    first, tenant, user = _hinted_user(make_app, scaikey)
    sub = user_sub(user)
    receiver = first.test_client()
    assert _deliver(receiver, scaikey, "user.created", {"id": sub, "email": user.identity_id[5:], "status": "SUSPENDED"},
                    tenant_id=tenant).status_code == 200
    second = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    assert warm_worker(second.extensions["scaivault"], 15)["identities"]["principals"] >= 1
    user.client = second.test_client()
    resp = user.get("/v1/secrets/warm/a")
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"


def test_warmed_rows_are_keyed_by_tenant_and_a_forged_hint_reads_only_database_rows(make_app, scaikey):
    """A hint names a key; what is cached under it is what the database holds for exactly that key."""
    from scaivault.auth.authenticator import RECENT_PRINCIPALS_KEY

    _first, tenant, user = _hinted_user(make_app, scaikey)
    sub = user_sub(user)
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    runtime = app.extensions["scaivault"]
    other_tenant = new_tenant()
    forged = [json.dumps(["user", sub, None, other_tenant]), json.dumps(["admin", sub, None, tenant]),
              json.dumps(["user", sub, None, "bad tenant!"]), "not json"]
    runtime.redis.zadd(RECENT_PRINCIPALS_KEY, {member: 9e12 for member in forged})
    try:
        warm_worker(runtime, 15)
        rows = runtime.authenticator._rows
        assert ("user", sub, None, tenant) in rows
        assert rows[("user", sub, None, tenant)][0].tenant["id"] == tenant
        crossed = rows[("user", sub, None, other_tenant)][0]        # the other tenant's view: no row, no grant
        assert crossed.tenant is None and crossed.stored == ()
        assert not any(k[0] not in ("user", "sa") or k[3] == "bad tenant!" for k in rows)
    finally:
        runtime.redis.zrem(RECENT_PRINCIPALS_KEY, *forged)


def test_the_identity_statement_returns_the_tenant_row_as_select_star_does(make_app, scaikey):
    from scaivault.auth.authenticator import read_identity_rows
    from scaivault.identity import store

    _first, tenant, user = _hinted_user(make_app, scaikey)
    runtime = make_app(RATE_LIMITS=HIGH_RATE_LIMITS).extensions["scaivault"]
    with runtime.db.session() as s:
        key = ("user", user_sub(user), None, tenant)
        assert read_identity_rows(s, [key])[key].tenant == store.tenant(s, tenant)


def user_sub(caller) -> str:
    import jwt

    return jwt.decode(caller.token, options={"verify_signature": False})["sub"]
