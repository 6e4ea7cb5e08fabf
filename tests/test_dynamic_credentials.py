"""Dynamic database credentials on real servers: the local PostgreSQL and a private MariaDB."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from scaivault.dynamic.templates import MYSQL, POSTGRES
from scaivault.services.dynamic import utcnow
from tests.dynamic_support import (MYSQL_CREATION, MYSQL_REVOCATION, PG_CREATION, PG_REVOCATION, MariaDBServer,
                                   PostgresTarget, TenantEnv, pg_admin)
from tests.secrets_support import error_code, grant

DYNAMIC_SCOPES = ("admin", "secrets:read", "secrets:write", "secrets:list", "secrets:rotate", "policies:read", "policies:write",
                  "dynamic:read", "dynamic:manage")


@pytest.fixture(scope="module")
def pg_target():
    target = PostgresTarget()
    target.issued = []
    yield target
    target.drop(target.issued)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_app(make_app):
    return make_app()


@pytest.fixture(scope="module")
def env(module_app, scaikey):
    """A tenant with an admin caller (every dynamic scope) and the runtime."""
    return TenantEnv(module_app, scaikey, DYNAMIC_SCOPES)


def _engine(env, name, plugin, url, root_path, user, password, **extra):
    resp = env.admin.put(f"/v1/secrets/{root_path}", json={"data": {"username": user, "password": password},
                                                            "secret_type": "json"})
    assert resp.status_code in (200, 201), resp.get_json()
    body = {"name": name, "type": "database",
            "config": {"plugin": plugin, "connection_url": url, "root_credentials_path": root_path}, **extra}
    return env.admin.post("/v1/dynamic/engines", json=body)


@pytest.fixture(scope="module")
def pg_engine(env, pg_target):
    resp = _engine(env, "pg", "postgresql", pg_target.connection_url, "infra/pg/root", pg_target.root_user,
                   pg_target.root_password, default_ttl="1h", max_ttl="4h")
    assert resp.status_code == 201, resp.get_json()
    resp = env.admin.put("/v1/dynamic/engines/pg/roles/readonly",
                         json={"creation_statements": PG_CREATION, "revocation_statements": PG_REVOCATION})
    assert resp.status_code == 201, resp.get_json()
    return "pg"


@pytest.fixture(scope="module")
def maria_engine(env, mariadb):
    resp = _engine(env, "maria", "mariadb", mariadb.connection_url, "infra/maria/root", mariadb.root_user,
                   mariadb.root_password)
    assert resp.status_code == 201, resp.get_json()
    resp = env.admin.put("/v1/dynamic/engines/maria/roles/reader",
                         json={"creation_statements": MYSQL_CREATION, "revocation_statements": MYSQL_REVOCATION,
                               "max_ttl": "2h"})
    assert resp.status_code == 201, resp.get_json()
    return "maria"


def _creds(env, engine, role, pg_target=None, **body):
    resp = env.admin.post(f"/v1/dynamic/engines/{engine}/creds/{role}", json=body or None)
    assert resp.status_code == 200, resp.get_json()
    creds = resp.get_json()
    if pg_target is not None:
        pg_target.issued.append(creds["data"]["username"])
    return creds


# ---------------------------------------------------------------- templates and injection
def test_template_values_are_escaped_for_the_quotes_they_stand_in():
    hostile = 'x"; DROP TABLE accounts; --\'\\'
    values = {"name": hostile, "password": hostile, "expiration": "2030-01-01"}
    assert POSTGRES.render('CREATE ROLE "{{name}}" PASSWORD \'{{password}}\'', values) == \
        'CREATE ROLE "x""; DROP TABLE accounts; --\'\\" PASSWORD \'x"; DROP TABLE accounts; --\'\'\\\''
    # bare placeholders are quoted whole: an identifier for the name, a literal otherwise
    assert POSTGRES.render("DROP ROLE {{name}}", {"name": 'a"b', "password": "", "expiration": ""}) == 'DROP ROLE "a""b"'
    assert MYSQL.render("CREATE USER '{{name}}'@'%' IDENTIFIED BY {{password}}", values) == \
        "CREATE USER 'x\"; DROP TABLE accounts; --\\'\\\\'@'%' IDENTIFIED BY 'x\"; DROP TABLE accounts; --\\'\\\\'"


def test_a_hostile_name_rendered_into_a_postgres_statement_stays_a_name(pg_target):
    hostile = 'evil"; DROP TABLE accounts; --'
    statement = POSTGRES.render('CREATE ROLE "{{name}}" PASSWORD \'{{password}}\'',
                                {"name": hostile, "password": "p'; DROP TABLE accounts; --", "expiration": ""})
    conn = pg_admin(pg_target.database)
    try:
        conn.run(statement)
        assert conn.run("SELECT count(*) FROM accounts")[0][0] == 2
        assert conn.run("SELECT 1 FROM pg_roles WHERE rolname = :n", n=hostile)
        conn.run(POSTGRES.render("DROP ROLE {{name}}", {"name": hostile, "password": "", "expiration": ""}))
    finally:
        conn.close()


def test_a_hostile_name_rendered_into_a_mariadb_statement_stays_a_name(mariadb):
    hostile = "ev'il\\'; DROP DATABASE app; --"
    with mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(MYSQL.render("CREATE USER '{{name}}'@'%' IDENTIFIED BY {{password}}",
                                 {"name": hostile, "password": "p'; DROP DATABASE app; --", "expiration": ""}))
        cur.execute("SELECT count(*) FROM app.accounts")
        assert cur.fetchone()[0] == 2
        assert mariadb.user_exists(hostile)
        cur.execute(MYSQL.render("DROP USER {{name}}@'%'", {"name": hostile, "password": "", "expiration": ""}))


def test_a_role_name_carrying_sql_is_refused_with_invalid_role(env, pg_engine):
    resp = env.admin.post("/v1/dynamic/engines/pg/roles", json={"name": 'x"; DROP TABLE accounts; --',
                                                                "creation_statements": PG_CREATION})
    assert resp.status_code == 400 and error_code(resp) == "invalid_role"
    resp = env.admin.post("/v1/dynamic/engines/pg/creds/x%22%3B%20DROP%20TABLE%20accounts")
    assert resp.status_code in (400, 404)


# ---------------------------------------------------------------- engines
def test_a_wrong_root_credential_gives_400_invalid_config_with_the_reason_and_never_the_password(env, mariadb):
    password = "Wrong-" + secrets.token_urlsafe(10)
    resp = _engine(env, "badmaria", "mysql", mariadb.connection_url, "infra/badmaria/root", "svroot", password)
    assert resp.status_code == 400 and error_code(resp) == "invalid_config"
    text = resp.get_data(as_text=True)
    assert "Access denied" in text and password not in text


def test_an_unreachable_database_gives_400_invalid_config(env, pg_target):
    from tests.fakes.servers import free_port

    url = f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{free_port()}/x?sslmode=disable"
    resp = _engine(env, "nowhere", "postgresql", url, "infra/nowhere/root", "u", "Secret-pw-123")
    assert resp.status_code == 400 and error_code(resp) == "invalid_config"
    assert "Secret-pw-123" not in resp.get_data(as_text=True)


def test_a_connection_url_with_a_literal_password_is_refused(env, pg_target):
    resp = _engine(env, "literal", "postgresql", "postgresql://u:hunter2@127.0.0.1/x", "infra/lit/root", "u", "p")
    assert resp.status_code == 400 and error_code(resp) == "invalid_config"
    assert "hunter2" not in resp.get_data(as_text=True)


def test_creating_an_engine_needs_read_on_the_root_secret(env, pg_target, pg_engine):
    user = env.callers.user(f"ops-{secrets.token_hex(3)}@{env.tenant}.example", env.tenant, scopes=DYNAMIC_SCOPES)
    grant(env.admin, user.identity_id, [{"path_pattern": "dynamic/**", "permissions": ["admin"]}])
    body = {"name": "pg2", "type": "database", "config": {"plugin": "postgresql", "connection_url": pg_target.connection_url,
                                                          "root_credentials_path": "infra/pg/root"}}
    resp = user.post("/v1/dynamic/engines", json=body)
    assert resp.status_code == 403 and error_code(resp) == "access_denied"
    grant(env.admin, user.identity_id, [{"path_pattern": "infra/pg/root", "permissions": ["read"]}])
    resp = user.post("/v1/dynamic/engines", json=body)
    assert resp.status_code == 201, resp.get_json()
    assert pg_target.root_password not in resp.get_data(as_text=True)
    assert env.admin.delete("/v1/dynamic/engines/pg2").status_code == 200


def test_an_unknown_plugin_is_invalid_config_listing_the_installed_ones(env):
    resp = env.admin.post("/v1/dynamic/engines", json={"name": "x", "type": "database", "config": {
        "plugin": "oracle", "connection_url": "oracle://{{username}}:{{password}}@h/x", "root_credentials_path": "a/b"}})
    assert resp.status_code == 400 and error_code(resp) == "invalid_config"
    assert {"postgresql", "mysql"} <= set(resp.get_json()["error"]["details"]["installed"])


def test_engine_get_list_patch_and_health(env, pg_engine):
    assert env.admin.get("/v1/dynamic/engines/pg").get_json()["config"]["root_credentials_path"] == "infra/pg/root"
    assert "pg" in [e["name"] for e in env.admin.get("/v1/dynamic/engines").get_json()["engines"]]
    resp = env.admin.patch("/v1/dynamic/engines/pg", json={"default_ttl": "30m"})
    assert resp.status_code == 200 and resp.get_json()["default_ttl"] == 1800
    assert env.admin.patch("/v1/dynamic/engines/pg", json={"default_ttl": "1h"}).status_code == 200
    health = env.admin.get("/v1/dynamic/engines/pg/health").get_json()
    assert health["status"] == "healthy" and "leases" in health
    assert env.admin.get("/v1/dynamic/engines/none").status_code == 404


# ---------------------------------------------------------------- credentials on PostgreSQL
def test_postgres_credentials_log_in_are_distinct_and_stop_working_after_revoke(env, pg_target, pg_engine):
    first = _creds(env, "pg", "readonly", pg_target)
    second = _creds(env, "pg", "readonly", pg_target)
    assert first["data"]["username"] != second["data"]["username"]
    assert first["lease_duration"] == 3600 and first["renewable"] is True
    assert first["lease_id"].startswith("pg/readonly/")
    assert pg_target.login_works(first["data"]["username"], first["data"]["password"])
    assert not pg_target.login_works(first["data"]["username"], "not-the-password")
    resp = env.admin.post(f"/v1/leases/{first['lease_id']}/revoke")
    assert resp.status_code == 200 and resp.get_json()["state"] == "revoked"
    assert not pg_target.role_exists(first["data"]["username"])
    assert not pg_target.login_works(first["data"]["username"], first["data"]["password"])
    assert pg_target.login_works(second["data"]["username"], second["data"]["password"])
    env.admin.post(f"/v1/leases/{second['lease_id']}/revoke")


def test_postgres_credentials_stop_working_after_expiry_by_the_sweeper(env, pg_target, pg_engine):
    creds = _creds(env, "pg", "readonly", pg_target, ttl="10m")
    assert creds["lease_duration"] == 600
    service = env.runtime.dynamic
    early = service.sweep(now=utcnow() + timedelta(minutes=5))
    assert pg_target.login_works(creds["data"]["username"], creds["data"]["password"]), early
    result = service.sweep(now=utcnow() + timedelta(minutes=11))
    assert result["revoked"] >= 1
    assert not pg_target.role_exists(creds["data"]["username"])
    lease = env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()
    assert lease["state"] == "revoked" and lease["ttl"] == 0


def test_ttl_is_capped_by_max_ttl_and_renew_is_capped_too(env, pg_target, pg_engine):
    creds = _creds(env, "pg", "readonly", pg_target, ttl="100h")
    assert creds["lease_duration"] == 4 * 3600
    creds = _creds(env, "pg", "readonly", pg_target, ttl="1h")
    renewed = env.admin.post(f"/v1/leases/{creds['lease_id']}/renew", json={"increment": "2h"}).get_json()
    assert renewed["ttl"] > 3600 and renewed["state"] == "active"
    capped = env.admin.post(f"/v1/leases/{creds['lease_id']}/renew", json={"increment": "90h"}).get_json()
    assert capped["expires_at"] == capped["max_expires_at"] and capped["renewable"] is False
    assert env.admin.post("/v1/leases/revoke-prefix", json={"prefix": "pg/readonly/"}).status_code == 200


def test_a_failed_revocation_is_retried_with_backoff_and_shown_in_health(env, pg_target, pg_engine):
    resp = env.admin.put("/v1/dynamic/engines/pg/roles/fragile",
                         json={"creation_statements": PG_CREATION,
                               "revocation_statements": ["DROP TABLE no_such_table_here"] + PG_REVOCATION})
    assert resp.status_code == 201
    creds = _creds(env, "pg", "fragile", pg_target, ttl="5m")
    later = utcnow() + timedelta(minutes=6)
    env.runtime.dynamic.sweep(now=later)
    lease = env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()
    assert lease["state"] == "revoke_failed" and lease["revoke_attempts"] == 1 and "no_such_table_here" in lease["last_error"]
    assert pg_target.role_exists(creds["data"]["username"])
    health = env.admin.get("/v1/dynamic/engines/pg/health").get_json()
    assert creds["lease_id"] in [f["lease_id"] for f in health["failed_revocations"]]
    detailed = env.admin.get("/v1/health/detailed").get_json()["checks"]["dynamic_leases"]
    assert detailed["status"] == "degraded" and detailed["revoke_failed"] >= 1
    # not retried before its back-off; retried after it, and still failing: the attempt count grows
    env.runtime.dynamic.sweep(now=later + timedelta(seconds=5))
    assert env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()["revoke_attempts"] == 1
    env.runtime.dynamic.sweep(now=later + timedelta(seconds=31))
    assert env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()["revoke_attempts"] == 2
    # the operator fixes the role: the next retry revokes it
    env.admin.put("/v1/dynamic/engines/pg/roles/fragile",
                  json={"creation_statements": PG_CREATION, "revocation_statements": PG_REVOCATION})
    env.runtime.dynamic.sweep(now=later + timedelta(hours=1))
    assert env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()["state"] == "revoked"
    assert not pg_target.role_exists(creds["data"]["username"])


def test_the_sweeper_needs_no_redis(make_app, env, pg_target, pg_engine):
    from tests.fakes.servers import free_port

    creds = _creds(env, "pg", "readonly", pg_target, ttl="1m")
    offline = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = offline.extensions["scaivault"].dynamic.sweep(now=utcnow() + timedelta(minutes=2))
    assert result["revoked"] >= 1 and not pg_target.role_exists(creds["data"]["username"])


def test_deleting_an_engine_with_live_leases_needs_force_which_revokes_them(env, pg_target):
    resp = _engine(env, "pgdel", "postgresql", pg_target.connection_url, "infra/pg/root", pg_target.root_user,
                   pg_target.root_password)
    assert resp.status_code == 201
    env.admin.put("/v1/dynamic/engines/pgdel/roles/r", json={"creation_statements": PG_CREATION,
                                                             "revocation_statements": PG_REVOCATION})
    creds = _creds(env, "pgdel", "r", pg_target)
    resp = env.admin.delete("/v1/dynamic/engines/pgdel")
    assert resp.status_code == 409 and error_code(resp) == "conflict"
    resp = env.admin.delete("/v1/dynamic/engines/pgdel?force=true")
    assert resp.status_code == 200 and resp.get_json()["revoked_leases"] == 1
    assert not pg_target.role_exists(creds["data"]["username"])


# ---------------------------------------------------------------- policies and scopes
def test_policies_govern_credentials_on_dynamic_engine_role(env, pg_target, pg_engine):
    app_user = env.callers.user(f"app-{secrets.token_hex(3)}@{env.tenant}.example", env.tenant, scopes=("dynamic:read",))
    resp = app_user.post("/v1/dynamic/engines/pg/creds/readonly")
    assert resp.status_code == 403 and error_code(resp) == "access_denied"
    grant(env.admin, app_user.identity_id, [{"path_pattern": "dynamic/pg/readonly", "permissions": ["read"]}])
    resp = app_user.post("/v1/dynamic/engines/pg/creds/readonly")
    assert resp.status_code == 200, resp.get_json()
    creds = resp.get_json()
    pg_target.issued.append(creds["data"]["username"])
    assert app_user.post("/v1/dynamic/engines/pg/creds/fragile").status_code == 403
    # its own leases are visible to it; configuration needs dynamic:manage
    leases = app_user.get("/v1/leases").get_json()["leases"]
    assert [lease["lease_id"] for lease in leases] == [creds["lease_id"]]
    assert app_user.post("/v1/dynamic/engines", json={"name": "x"}).status_code == 403
    other = env.callers.user(f"other-{secrets.token_hex(3)}@{env.tenant}.example", env.tenant, scopes=("dynamic:read",))
    assert other.post(f"/v1/leases/{creds['lease_id']}/revoke").status_code == 403
    no_scope = env.callers.user(f"ns-{secrets.token_hex(3)}@{env.tenant}.example", env.tenant, scopes=("secrets:read",))
    resp = no_scope.post("/v1/dynamic/engines/pg/creds/readonly")
    assert resp.status_code == 403 and error_code(resp) == "insufficient_scope"
    assert app_user.post(f"/v1/leases/{creds['lease_id']}/revoke").status_code == 200


def test_policy_bindings_may_name_a_dynamic_engine_identity(env):
    resp = env.admin.post("/v1/policies", json={"name": f"pg-root-{secrets.token_hex(3)}",
                                                "rules": [{"path_pattern": "infra/pg/root", "permissions": ["read", "rotate"]}]})
    policy_id = resp.get_json()["id"]
    resp = env.admin.post(f"/v1/policies/{policy_id}/bindings",
                          json={"identity_type": "dynamic_engine", "identity_id": "dynamic:pg"})
    assert resp.status_code == 201, resp.get_json()


def test_lease_listing_filters(env, pg_target, pg_engine):
    creds = _creds(env, "pg", "readonly", pg_target)
    listed = env.admin.get("/v1/leases?engine=pg&role=readonly&state=active").get_json()["leases"]
    assert creds["lease_id"] in [lease["lease_id"] for lease in listed]
    assert all(lease["role"] == "readonly" and lease["state"] == "active" for lease in listed)
    assert env.admin.get("/v1/leases?role=nothing").get_json()["leases"] == []
    mine = env.admin.get(f"/v1/leases?identity={env.admin.identity_id}&limit=1").get_json()
    assert len(mine["leases"]) == 1 and mine["has_more"] in (True, False)
    assert "password" not in env.admin.get(f"/v1/leases/{creds['lease_id']}").get_data(as_text=True)
    env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke")


# ---------------------------------------------------------------- MariaDB
def test_mariadb_credentials_log_in_and_stop_after_revoke_and_after_expiry(env, mariadb, maria_engine):
    creds = _creds(env, "maria", "reader")
    assert creds["lease_duration"] == 3600
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert mariadb.login_works(user, password)
    assert not mariadb.login_works(user, password + "x")
    assert env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke").status_code == 200
    assert not mariadb.login_works(user, password) and not mariadb.user_exists(user)

    expiring = _creds(env, "maria", "reader", ttl="3h")
    assert expiring["lease_duration"] == 7200          # the role's max_ttl
    assert mariadb.login_works(expiring["data"]["username"], expiring["data"]["password"])
    env.runtime.dynamic.sweep(now=utcnow() + timedelta(hours=2, minutes=1))
    assert not mariadb.login_works(expiring["data"]["username"], expiring["data"]["password"])
    assert env.admin.get(f"/v1/leases/{expiring['lease_id']}").get_json()["state"] == "revoked"


def test_rotate_root_sets_a_new_password_only_scaivault_knows(env, mariadb, maria_engine):
    before = env.admin.get("/v1/secrets/infra/maria/root").get_json()
    resp = env.admin.post("/v1/dynamic/engines/maria/rotate-root")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["version"] == before["version"] + 1
    after = env.admin.get("/v1/secrets/infra/maria/root").get_json()
    assert after["data"]["password"] != before["data"]["password"]
    assert not mariadb.login_works_root(before["data"]["password"])
    assert mariadb.login_works_root(after["data"]["password"])
    creds = _creds(env, "maria", "reader")       # the engine goes on with the new password
    assert mariadb.login_works(creds["data"]["username"], creds["data"]["password"])
    env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke")


def test_lease_metrics_are_exported(env, pg_target, pg_engine):
    creds = _creds(env, "pg", "readonly", pg_target)
    env.runtime.dynamic.refresh_gauges()
    from scaivault.metrics import exposition

    text = exposition()[0].decode()
    assert 'scaivault_leases_generated_total{engine="pg",role="readonly"}' in text
    assert 'scaivault_leases_active{engine="pg"}' in text
    assert 'scaivault_engine_health{engine="pg"} 1.0' in text
    assert creds["data"]["password"] not in text
    env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke")


def test_only_one_sweeper_runs_across_instances(env, pg_target, pg_engine):
    from scaivault.services.dynamic import SWEEP_ADVISORY_LOCK

    creds = _creds(env, "pg", "readonly", pg_target, ttl="1m")
    with env.runtime.db.session() as other_instance:
        assert other_instance.scalar("SELECT pg_try_advisory_lock(:k)", k=SWEEP_ADVISORY_LOCK)
        try:
            assert env.runtime.dynamic.sweep(now=utcnow() + timedelta(minutes=2))["skipped"] is True
            assert pg_target.role_exists(creds["data"]["username"])
        finally:
            other_instance.scalar("SELECT pg_advisory_unlock(:k)", k=SWEEP_ADVISORY_LOCK)
    assert env.runtime.dynamic.sweep(now=utcnow() + timedelta(minutes=2))["revoked"] >= 1


def test_the_sweeper_is_a_scheduled_job(env):
    from apscheduler.schedulers.background import BackgroundScheduler

    from scaivault.jobs import lease_expiry

    scheduler = BackgroundScheduler(timezone="UTC")
    lease_expiry.register(scheduler, env.runtime)
    job = scheduler.get_job(lease_expiry.JOB_ID)
    assert job is not None and job.trigger.interval.total_seconds() == env.runtime.settings.lease_sweep_interval
    assert lease_expiry.run_sweep(env.runtime)["skipped"] is False


def test_a_creation_that_fails_half_way_on_mariadb_is_cleaned_up(env, mariadb, maria_engine):
    resp = env.admin.put("/v1/dynamic/engines/maria/roles/halfway", json={
        "creation_statements": [MYSQL_CREATION[0], "SELECT * FROM app.no_such_table"],
        "revocation_statements": MYSQL_REVOCATION})
    assert resp.status_code == 201
    resp = env.admin.post("/v1/dynamic/engines/maria/creds/halfway")
    assert resp.status_code == 503 and error_code(resp) == "service_unavailable"
    leases = env.admin.get("/v1/leases?engine=maria&role=halfway").get_json()["leases"]
    assert len(leases) == 1 and leases[0]["state"] == "revoked"
    assert not mariadb.user_exists(leases[0]["username"])       # the user CREATE USER made is gone again


def test_rotate_root_on_postgres_changes_the_root_password(env, pg_target, pg_engine):
    from tests.dynamic_support import scram_password_matches

    before = env.admin.get("/v1/secrets/infra/pg/root").get_json()["data"]["password"]
    assert scram_password_matches(pg_target.root_user, before)
    resp = env.admin.post("/v1/dynamic/engines/pg/rotate-root")
    assert resp.status_code == 200, resp.get_json()
    after = env.admin.get("/v1/secrets/infra/pg/root").get_json()["data"]["password"]
    assert after != before and scram_password_matches(pg_target.root_user, after)
    assert not scram_password_matches(pg_target.root_user, before)
    creds = _creds(env, "pg", "readonly", pg_target)
    assert pg_target.login_works(creds["data"]["username"], creds["data"]["password"])
    env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke")


def test_a_patch_to_an_unreachable_url_is_refused_and_changes_nothing(env, pg_engine):
    from tests.fakes.servers import free_port

    before = env.admin.get("/v1/dynamic/engines/pg").get_json()
    bad = f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{free_port()}/x?sslmode=disable"
    resp = env.admin.patch("/v1/dynamic/engines/pg", json={"config": {"connection_url": bad}})
    assert resp.status_code == 400 and error_code(resp) == "invalid_config"
    assert env.admin.get("/v1/dynamic/engines/pg").get_json()["config"] == before["config"]
    assert env.admin.patch("/v1/dynamic/engines/pg", json={"name": "renamed"}).status_code == 400


def test_lease_pages_follow_the_cursor(env, pg_target, pg_engine):
    issued = [_creds(env, "pg", "readonly", pg_target)["lease_id"] for _ in range(3)]
    seen, cursor = [], None
    while True:
        page = env.admin.get("/v1/leases?engine=pg&state=active&limit=2" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [lease["lease_id"] for lease in page["leases"]]
        if not page["has_more"]:
            break
        cursor = page["cursor"]
    assert set(issued) <= set(seen) and len(seen) == len(set(seen))
    assert error_code(env.admin.get("/v1/leases?cursor=garbage!")) == "invalid_cursor"
    assert env.admin.post("/v1/leases/revoke-prefix", json={"prefix": "pg/readonly/"}).get_json()["revoked"] >= 3


def test_revoke_prefix_needs_admin_on_that_part_of_dynamic(env, pg_target, pg_engine):
    user = env.callers.user(f"rp-{secrets.token_hex(3)}@{env.tenant}.example", env.tenant,
                            scopes=("dynamic:read", "dynamic:manage"))
    grant(env.admin, user.identity_id, [{"path_pattern": "dynamic/pg/readonly", "permissions": ["read", "write"]}])
    creds = _creds(env, "pg", "readonly", pg_target)
    resp = user.post("/v1/leases/revoke-prefix", json={"prefix": "pg/"})
    assert resp.status_code == 403
    assert env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()["state"] == "active"
    # a non-owner with write on the role may renew it, but not revoke it without delete
    assert user.post(f"/v1/leases/{creds['lease_id']}/renew").status_code == 200
    assert user.post(f"/v1/leases/{creds['lease_id']}/revoke").status_code == 403
    assert env.admin.post("/v1/leases/revoke-prefix", json={"prefix": "pg/"}).status_code == 200
    assert not pg_target.role_exists(creds["data"]["username"])


def test_a_lease_expires_in_real_time_under_the_scheduled_sweeper(make_app, env, pg_target, pg_engine):
    import time as clock

    from apscheduler.schedulers.background import BackgroundScheduler

    from scaivault.jobs import lease_expiry

    creds = _creds(env, "pg", "readonly", pg_target, ttl="2s")
    assert pg_target.login_works(creds["data"]["username"], creds["data"]["password"])
    instance = make_app(LEASE_SWEEP_INTERVAL="1s")          # another instance, sweeping every second
    scheduler = BackgroundScheduler(timezone="UTC")
    lease_expiry.register(scheduler, instance.extensions["scaivault"])
    scheduler.start()
    try:
        deadline = clock.monotonic() + 15
        while pg_target.role_exists(creds["data"]["username"]) and clock.monotonic() < deadline:
            clock.sleep(0.25)
    finally:
        scheduler.shutdown(wait=True)
    assert not pg_target.login_works(creds["data"]["username"], creds["data"]["password"])
    assert env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()["state"] == "revoked"


@pytest.mark.parametrize("method, url, body", [
    ("POST", "/v1/dynamic/engines", {"name": "x", "config": "not-an-object"}),
    ("POST", "/v1/dynamic/engines", {"name": "UPPER", "type": "database", "config": {}}),
    ("POST", "/v1/dynamic/engines", {"name": "x", "type": "ldap", "config": {}}),
    ("POST", "/v1/dynamic/engines", {"name": "x", "type": "database", "default_ttl": -5, "config": {}}),
    ("PATCH", "/v1/dynamic/engines/pg", {"max_ttl": "forever"}),
    ("PATCH", "/v1/dynamic/engines/pg", {"default_ttl": "48h"}),
    ("PUT", "/v1/dynamic/engines/pg/roles/r1", {"creation_statements": [""]}),
    ("PUT", "/v1/dynamic/engines/pg/roles/r1", {"creation_statements": "CREATE ROLE x"}),
    ("PUT", "/v1/dynamic/engines/pg/roles/r1", {"creation_statements": ["x"], "default_ttl": "2h", "max_ttl": "1h"}),
    ("PUT", "/v1/dynamic/engines/pg/roles/r1", {"creation_statements": ["x\u0000"]}),
    ("POST", "/v1/dynamic/engines/pg/creds/readonly", {"ttl": "soon"}),
    ("POST", "/v1/dynamic/engines/pg/creds/readonly", {"ttl": True}),
    ("POST", "/v1/dynamic/engines/pg/creds/no-such-role", None),
    ("POST", "/v1/dynamic/engines/..%2F..%2Fx/creds/r", None),
    ("GET", "/v1/leases/" + "x" * 3000, None),
    ("GET", "/v1/leases?state=sideways", None),
    ("GET", "/v1/leases?limit=0", None),
    ("POST", "/v1/leases/pg/readonly/nope/renew", {"increment": "1h"}),
    ("POST", "/v1/leases/pg/readonly/nope/renew", {"increment": "lots"}),
    ("POST", "/v1/leases/revoke-prefix", {"prefix": ""}),
    ("DELETE", "/v1/dynamic/engines/pg?force=maybe", None),
])
def test_bad_input_gets_a_precise_envelope_never_a_500(env, pg_engine, method, url, body):
    resp = env.admin.call(method, url, json=body) if body is not None else env.admin.call(method, url)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert error_code(resp)


def test_another_tenant_sees_no_engine_role_or_lease(env, pg_target, pg_engine):
    from tests.secrets_support import new_tenant

    creds = _creds(env, "pg", "readonly", pg_target)
    other_tenant = new_tenant()
    other = env.callers.user(f"admin@{other_tenant}.example", other_tenant, scopes=DYNAMIC_SCOPES, role="tenant_admin")
    assert error_code(other.get("/v1/dynamic/engines/pg")) == "engine_not_found"
    assert error_code(other.post("/v1/dynamic/engines/pg/creds/readonly")) == "engine_not_found"
    assert other.get("/v1/dynamic/engines").get_json()["engines"] == []
    assert error_code(other.get(f"/v1/leases/{creds['lease_id']}")) == "lease_not_found"
    assert error_code(other.post(f"/v1/leases/{creds['lease_id']}/revoke")) == "lease_not_found"
    assert other.post("/v1/leases/revoke-prefix", json={"prefix": "pg/"}).get_json()["matched"] == 0
    assert other.get("/v1/leases").get_json()["leases"] == []
    assert env.admin.get(f"/v1/leases/{creds['lease_id']}").get_json()["state"] == "active"
    env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke")


def test_the_engines_register_through_the_entry_point_group_like_any_plugin():
    from scaivault.plugins import describe_plugins, registrations

    assert {"postgresql", "mysql", "mariadb"} <= set(registrations("scaivault_dynamic_engines"))
    plugins = {p["name"]: p for p in describe_plugins()}
    assert plugins["dynamic_postgresql"]["provides"] == {"dynamic_engines": ["postgresql"]}
    assert plugins["dynamic_mysql"]["provides"] == {"dynamic_engines": ["mariadb", "mysql"]}
    assert plugins["dynamic_mysql"]["distribution"] == "scaivault"


def test_revoked_lease_records_are_purged_after_the_history_retention(env, pg_target, pg_engine):
    creds = _creds(env, "pg", "readonly", pg_target)
    env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke")
    assert env.runtime.dynamic.sweep(now=utcnow() + timedelta(days=29))["purged"] == 0
    assert env.admin.get(f"/v1/leases/{creds['lease_id']}").status_code == 200
    assert env.runtime.dynamic.sweep(now=utcnow() + timedelta(days=31))["purged"] >= 1
    assert error_code(env.admin.get(f"/v1/leases/{creds['lease_id']}")) == "lease_not_found"


@pytest.mark.slow
def test_served_instances_issue_mariadb_credentials_and_their_workers_sweep_them(base_env, env, mariadb, maria_engine):
    """`scaivault serve` (gunicorn + gevent, two workers): HTTP in, the scheduled sweeper revokes."""
    import time as clock

    import requests

    from tests.foundation_support import ServedInstance

    with ServedInstance({**base_env, "WEB_CONCURRENCY": "2", "LEASE_SWEEP_INTERVAL": "1s"}) as instance:
        headers = {"Authorization": f"Bearer {env.admin.token}"}
        resp = requests.post(f"{instance.url}/v1/dynamic/engines/maria/creds/reader", json={"ttl": "3s"},
                             headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
        creds = resp.json()
        assert mariadb.login_works(creds["data"]["username"], creds["data"]["password"])
        deadline = clock.monotonic() + 40        # workers start their schedulers 5-15 s after boot
        while mariadb.user_exists(creds["data"]["username"]) and clock.monotonic() < deadline:
            clock.sleep(0.5)
        assert not mariadb.login_works(creds["data"]["username"], creds["data"]["password"])
        lease = requests.get(f"{instance.url}/v1/leases/{creds['lease_id']}", headers=headers, timeout=30).json()
        assert lease["state"] == "revoked"


def test_a_second_root_rotation_of_the_same_engine_waits_its_turn(env, mariadb, maria_engine):
    engine_id = env.runtime.db.scalar("SELECT id FROM dynamic_engines WHERE name = 'maria' AND tenant_id = :t",
                                      t=env.tenant)
    with env.runtime.db.session() as running:
        assert running.scalar("SELECT pg_try_advisory_lock(hashtext(:k))", k="rotate-root:" + engine_id)
        try:
            resp = env.admin.post("/v1/dynamic/engines/maria/rotate-root")
            assert resp.status_code == 409 and error_code(resp) == "rotation_in_progress"
        finally:
            running.scalar("SELECT pg_advisory_unlock(hashtext(:k))", k="rotate-root:" + engine_id)
    assert env.admin.post("/v1/dynamic/engines/maria/rotate-root").status_code == 200
    creds = _creds(env, "maria", "reader")
    assert mariadb.login_works(creds["data"]["username"], creds["data"]["password"])
    env.admin.post(f"/v1/leases/{creds['lease_id']}/revoke")


def test_dynamic_allowed_hosts_limits_where_engines_may_connect(make_app, scaikey, pg_target):
    for allowed, expected in (("db-*.internal, 10.0.0.0/8", 400), ("127.0.0.0/8", 201), ("127.0.0.1", 201)):
        env = TenantEnv(make_app(DYNAMIC_ALLOWED_HOSTS=allowed), scaikey, DYNAMIC_SCOPES)
        resp = _engine(env, "pgx", "postgresql", pg_target.connection_url, "infra/pgx/root", pg_target.root_user,
                       pg_target.root_password)
        assert resp.status_code == expected, (allowed, resp.get_json())
        if expected == 400:
            assert error_code(resp) == "invalid_config" and "DYNAMIC_ALLOWED_HOSTS" in resp.get_json()["error"]["message"]
