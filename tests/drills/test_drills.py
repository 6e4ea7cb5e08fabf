"""The operator's chaos day as tests: one fault at a time under a recording load, then the checks.

Each drill runs `scaivault serve` (2 workers) against its own database on a private PostgreSQL
cluster, a private Redis and (for the KMS drill) a moto KMS process, drives writers and readers
that record every acknowledged write, injects one fault, lets the load run on after it, and
ends with `check_drill`: every acknowledged write readable at its version with its value, no
stale read, errors only with the drill's expected codes, the tenant's audit chain verifies, and
the recovery time. The short version (seconds) runs by default; the long one (the durations of
the manual drill) is marked `drill_long`. Figures go to the file named by DRILL_RESULTS, if set.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import time
from dataclasses import dataclass

import pytest
import requests

from scaivault.config import DatabaseURL
from scaivault.migrate import MigrationRunner
from tests.drills.harness import (Instance, Load, MotoProcess, PrivatePostgres, PrivateRedis, check_drill)

TENANT = "tnt_drill"


@dataclass(frozen=True)
class Timing:
    before: float      # load before the fault
    hold: float        # the fault lasts this long
    after: float       # load after the fault ended


SHORT = Timing(1.0, 2.0, 2.0)
LONG = Timing(10, 25, 20)
VERSIONS = [pytest.param(SHORT, id="short"), pytest.param(LONG, id="long", marks=pytest.mark.drill_long)]


@pytest.fixture(scope="module")
def cluster():
    pg = PrivatePostgres().start()
    yield pg
    pg.destroy()


@pytest.fixture
def redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


@pytest.fixture
def drill_env(base_env, cluster, redis):
    name = cluster.create_database()
    url = cluster.url(name)
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    return {**base_env, "DATABASE_URL": url, "REDIS_URL": redis.url, "LOG_LEVEL": "warn",
            "KMS_LOCAL_KEY_FILE": os.path.join(cluster.dir, f"root-{name}.key")}


@pytest.fixture
def token(scaikey):
    return scaikey.mint(sub="usr_drill_" + secrets.token_hex(3), email="drill@drill.example", tenant_id=TENANT,
                        partner_id="ptn_drill", scopes=("secrets:read", "secrets:write"), role="tenant_admin")


def report(name: str, timing: Timing, result, **extra) -> None:
    line = {"drill": name, "version": "long" if timing is LONG else "short", **result.__dict__, **extra}
    print("\nDRILL", json.dumps(line))
    target = os.environ.get("DRILL_RESULTS")
    if target:
        with open(target, "a") as handle:
            handle.write(json.dumps(line) + "\n")


def run_load(instance_url, token, timing: Timing, fault, after: float | None = None, **load_kw):
    """Load before, during and after `fault(hold)`; returns (record, fault_ended, fault_result)."""
    sizes = {"writers": 2, "readers": 2} if timing is SHORT else {"writers": 8, "readers": 4}
    load = Load(instance_url, token, **{**sizes, **load_kw}).start()
    time.sleep(timing.before)
    outcome = fault(timing.hold)
    ended = time.monotonic()
    time.sleep(max(timing.after, after or 0))
    # a loaded machine may take longer than the window to recover (respawned workers warming up):
    # keep the load on until a request started after the fault succeeds, for at most RECOVERY_BOUND;
    # check_drill then reports the recovery time (and fails when there was none)
    while time.monotonic() - ended < RECOVERY_BOUND and not any(
            o.started >= ended and o.status in (200, 201) for o in list(load.record.outcomes)):
        time.sleep(0.1)
    return load.stop(), ended, outcome


RECOVERY_BOUND = 30.0


# ----------------------------------------------------------------------------- the drills

@pytest.mark.slow
@pytest.mark.parametrize("timing", VERSIONS)
def test_drill_worker_kill_9(drill_env, token, timing):
    instance = Instance(drill_env).start()
    try:
        def fault(hold):
            respawns = []
            deadline = time.monotonic() + hold
            while True:                                 # kill a worker, wait for its replacement
                old = instance.worker_pids()
                victim = old[0]
                killed = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                instance.wait_workers(len(old), exclude=(victim,))
                respawns.append(time.monotonic() - killed)
                if time.monotonic() >= deadline:
                    return respawns
                time.sleep(max(0.5, hold / 3))

        record, ended, respawns = run_load(instance.url, token, timing, fault)
        result = check_drill(instance.url, token, record, allowed_errors={"connection"}, fault_ended=ended,
                             database_url=drill_env["DATABASE_URL"], tenant_id=TENANT)
        report("worker_kill_9", timing, result, respawn_seconds=[round(r, 2) for r in respawns])
    finally:
        instance.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("timing", VERSIONS)
def test_drill_master_kill_9_and_restart(drill_env, token, timing):
    instance = Instance(drill_env).start()
    try:
        def fault(hold):
            port = instance.port
            instance.kill()
            time.sleep(min(hold, 2.0))
            replacement = Instance(drill_env, port=port)
            started = time.monotonic()
            replacement.start(wait_ready=False)
            ready = replacement.wait_ready()
            fault.replacement = replacement
            return time.monotonic() - started, ready

        record, ended, (start_seconds, _) = run_load(instance.url, token, timing, fault, timeout=10)
        replacement = fault.replacement
        try:
            result = check_drill(replacement.url, token, record, allowed_errors={"connection"}, fault_ended=ended,
                                 database_url=drill_env["DATABASE_URL"], tenant_id=TENANT)
            report("master_kill_9_restart", timing, result, restart_to_ready_seconds=round(start_seconds, 2))
        finally:
            replacement.cleanup()
    finally:
        instance.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("timing", VERSIONS)
def test_drill_redis_down(drill_env, token, redis, timing):
    instance = Instance(drill_env).start()
    try:
        def fault(hold):
            redis.stop()
            time.sleep(hold / 2)
            ready = requests.get(instance.url + "/v1/health/ready", timeout=10)
            time.sleep(hold / 2)
            redis.start()
            return ready.status_code, ready.json()

        record, ended, (status, body) = run_load(instance.url, token, timing, fault)
        # requests keep working without Redis, and readiness says so (200 degraded)
        assert status == 200 and body["checks"]["redis"] == "degraded", body
        result = check_drill(instance.url, token, record, allowed_errors=set(), fault_ended=ended,
                             database_url=drill_env["DATABASE_URL"], tenant_id=TENANT)
        report("redis_down", timing, result)
    finally:
        instance.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("timing", VERSIONS)
def test_drill_postgresql_restart(drill_env, token, cluster, timing):
    instance = Instance(drill_env).start()
    try:
        def fault(hold):
            time.sleep(max(0.0, hold - 1.0))
            took = cluster.restart()
            restarted = time.monotonic()
            ready_after = None
            while ready_after is None and time.monotonic() - restarted < 30:
                if requests.get(instance.url + "/v1/health/ready", timeout=10).status_code == 200:
                    ready_after = time.monotonic() - restarted
            return took, ready_after

        record, ended, (took, ready_after) = run_load(instance.url, token, timing, fault)
        result = check_drill(instance.url, token, record,
                             allowed_errors={"service_unavailable", "audit_unavailable"}, fault_ended=ended,
                             database_url=drill_env["DATABASE_URL"], tenant_id=TENANT)
        assert ready_after is not None and ready_after < 2.0
        report("postgresql_restart", timing, result, restart_seconds=round(took, 2),
               ready_after_restart_seconds=round(ready_after, 2))
    finally:
        instance.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("timing", VERSIONS)
def test_drill_kms_paused(drill_env, token, timing):
    kms = MotoProcess().start()
    kms_timeout, attempts = 1.0, 2
    env = {**drill_env, **kms.env(kms.create_key()), "KMS_TIMEOUT": str(kms_timeout), "KMS_RETRIES": str(attempts),
           # short TTL and no grace: keys expire during the outage, so requests must fail, and fast
           "KMS_CACHE_TTL": "1s", "KMS_CACHE_GRACE": "0s"}
    env.pop("KMS_LOCAL_KEY_FILE")
    instance = Instance(env).start()
    try:
        def fault(hold):
            kms.pause()
            # longer than the key cache and one bounded call, so that requests do fail
            time.sleep(max(hold, 1.0 + kms_timeout * attempts + 2.0))
            kms.resume()

        # the breaker closes at its next probe (every 2 s) once the KMS answers again
        record, ended, _ = run_load(instance.url, token, timing, fault, after=4.0)
        result = check_drill(instance.url, token, record, allowed_errors={"kms_unavailable"}, fault_ended=ended,
                             database_url=env["DATABASE_URL"], tenant_id=TENANT)
        # no request waited longer than one bounded KMS call (plus the request's own work)
        bound = kms_timeout * attempts + 1.5
        assert result.longest_wait < bound, result.line()
        assert result.errors.get("kms_unavailable", 0) > 0, "the outage outlived the key cache: requests must fail"
        log = instance.log()
        assert "circuit breaker open" in log
        report("kms_paused", timing, result, wait_bound_seconds=bound)
    finally:
        instance.cleanup()
        kms.stop()


@pytest.mark.slow
@pytest.mark.parametrize("timing", VERSIONS)
def test_drill_audit_insert_revoked(drill_env, token, cluster, timing):
    url = drill_env["DATABASE_URL"]
    database = url.rsplit("/", 1)[1].split("?")[0]
    role = "sv_drill_" + secrets.token_hex(3)
    admin = cluster.admin(database)
    admin.run(f"CREATE ROLE {role} LOGIN")
    admin.run(f"GRANT USAGE ON SCHEMA public TO {role}")
    admin.run(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    admin.run(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    env = {**drill_env, "DATABASE_URL": cluster.url(database, user=role), "MIGRATE_ON_START": "false"}
    instance = Instance(env).start()
    try:
        def fault(hold):
            admin.run(f"REVOKE INSERT ON audit_log FROM {role}")
            time.sleep(hold / 2)
            ready = requests.get(instance.url + "/v1/health/ready", timeout=10)
            time.sleep(hold / 2)
            admin.run(f"GRANT INSERT ON audit_log TO {role}")
            return ready.status_code, ready.json()

        record, ended, (status, body) = run_load(instance.url, token, timing, fault)
        assert status == 503 and body["checks"]["audit"] == "error", body
        result = check_drill(instance.url, token, record, allowed_errors={"audit_unavailable"}, fault_ended=ended,
                             database_url=url, tenant_id=TENANT)
        assert result.errors.get("audit_unavailable", 0) > 0
        report("audit_insert_revoked", timing, result)
    finally:
        instance.cleanup()
        admin.close()
