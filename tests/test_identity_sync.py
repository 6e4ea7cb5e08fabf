"""Full identity sync through ScaiKey's admin API: paging, removal, crash safety, one runner at a time."""
from __future__ import annotations

import threading
import time

import pytest

from scaivault.config import DatabaseURL
from scaivault.identity import store, sync
from scaivault.jobs import identity_sync as job
from scaivault.migrate import MigrationRunner
from tests.scaikey_standin import ScaiKeyStandin


@pytest.fixture
def directory_standin(tmp_path):
    """A private ScaiKey with a small directory (its own, so syncs never touch the shared cache)."""
    standin = ScaiKeyStandin().start()
    standin.per_page_max = 2          # forces several pages per list
    standin.add_client("sync-client", "s3cret", scopes=("admin:read",))
    d = standin.directory
    d.add_partner("ptn_s1", "Partner One")
    d.add_tenant("tnt_s1", "ptn_s1")
    d.add_tenant("tnt_s2", "ptn_s1")
    d.add_tenant("tnt_s3", "ptn_s1")
    for i in range(5):
        d.add_user(f"usr_s{i}", "tnt_s1", f"user{i}@one.example")
    d.add_user("usr_s9", "tnt_s2", "nine@two.example")
    d.add_group("grp_inner", "tnt_s1", "inner", members=("usr_s1", "usr_s2"))
    d.add_group("grp_outer", "tnt_s1", "outer", members=("grp_inner", "usr_s3"))
    d.add_application("app_rep", "cli_reporting", "reporting-service", tenant_id="tnt_s1")
    d.agents.append({"id": "agt_helper", "client_id": "cli_agent", "name": "helper-agent", "tenant_id": "tnt_s1"})
    d.admin_roles.append({"user_id": "usr_s0", "role": "TENANT_ADMIN", "tenant_id": "tnt_s1", "is_active": True})
    (tmp_path / "secret").write_text("s3cret\n")
    standin.secret_path = str(tmp_path / "secret")
    yield standin
    standin.stop()


@pytest.fixture
def sync_app(make_app, fresh_database_url, directory_standin):
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url)).apply()
    return make_app(DATABASE_URL=fresh_database_url, SCAIKEY_URL=directory_standin.url,
                    SCAIKEY_CLIENT_ID="sync-client", SCAIKEY_CLIENT_SECRET_FILE=directory_standin.secret_path)


def _run(app, **kw):
    rt = app.extensions["scaivault"]
    return sync.run_sync(rt, sync.new_run(rt, trigger="api", **kw))


def test_a_full_sync_mirrors_scaikey_across_pages(sync_app, directory_standin):
    run = _run(sync_app)
    assert run["status"] == "succeeded", run["error"]
    assert run["counts"]["users"] == 6 and run["counts"]["tenants"] == 3 and run["counts"]["groups"] == 2
    db = sync_app.extensions["scaivault"].db
    assert db.scalar("SELECT count(*) FROM identity_users WHERE deleted_at IS NULL") == 6
    assert db.scalar("SELECT synced FROM identity_tenants WHERE id = 'tnt_s2'") is True
    with db.session() as s:
        assert [g["name"] for g in store.groups_of_user(s, "usr_s1")] == ["inner", "outer"]
        assert [g["name"] for g in store.groups_of_user(s, "usr_s3")] == ["outer"]
        assert store.application_by_client_id(s, "cli_reporting")["name"] == "reporting-service"
    roles = db.query("SELECT identity_id, role, tenant_id, source FROM identity_role_assignments")
    assert roles == [{"identity_id": "user:user0@one.example", "role": "tenant_admin", "tenant_id": "tnt_s1",
                      "source": "scaikey"}]
    # the admin list calls were paginated (per_page capped at 2 by the stand-in)
    assert sum(1 for m, p in directory_standin.requests if p == "/api/v1/admin/users/") >= 4


def test_synced_identities_drive_whoami(sync_app, directory_standin, auth):
    _run(sync_app)
    client = sync_app.test_client()
    me = client.get("/v1/auth/whoami", headers=auth(directory_standin.mint(sub="usr_s1", tenant_id="tnt_s1"))).get_json()
    assert me["identity_id"] == "user:user1@one.example"
    assert me["display_name"] == "User1 Test"
    assert me["groups"] == ["group:inner", "group:outer"]
    admin = client.get("/v1/auth/whoami", headers=auth(directory_standin.mint(sub="usr_s0", tenant_id="tnt_s1"))).get_json()
    assert admin["roles"] == ["tenant_admin"]
    sa = directory_standin.mint_service("cli_reporting", tenant_id="tnt_s1")
    assert client.get("/v1/auth/whoami", headers=auth(sa)).get_json()["identity_id"] == "sa:reporting-service"
    agent = directory_standin.mint_service("cli_agent", tenant_id="tnt_s1")
    assert client.get("/v1/auth/whoami", headers=auth(agent)).get_json()["identity_id"] == "sa:helper-agent"


def test_a_removed_user_loses_access_at_the_next_sync(sync_app, directory_standin, auth):
    _run(sync_app)
    client = sync_app.test_client()
    token = directory_standin.mint(sub="usr_s4", tenant_id="tnt_s1")
    assert client.get("/v1/auth/whoami", headers=auth(token)).status_code == 200
    directory_standin.directory.remove("users", "usr_s4")
    assert _run(sync_app)["status"] == "succeeded"
    resp = client.get("/v1/auth/whoami", headers=auth(token))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_revoked"


def test_a_failure_mid_sync_leaves_the_previous_cache_intact(sync_app, directory_standin):
    _run(sync_app)
    db = sync_app.extensions["scaivault"].db
    before = db.query("SELECT id, email, deleted_at FROM identity_users ORDER BY id")
    directory_standin.directory.remove("users", "usr_s2")
    directory_standin.directory.users[0]["email"] = "changed@one.example"
    directory_standin.fail_resource = "groups"          # users already fetched, then ScaiKey fails
    run = _run(sync_app)
    assert run["status"] == "failed" and "HTTP 500" in run["error"]
    assert db.query("SELECT id, email, deleted_at FROM identity_users ORDER BY id") == before


def test_concurrent_full_syncs_run_once(sync_app, directory_standin):
    directory_standin.admin_delay = 0.1
    results = []
    rt = sync_app.extensions["scaivault"]
    runs = [sync.new_run(rt, trigger="api") for _ in range(3)]
    barrier = threading.Barrier(3)

    def contender(run):
        barrier.wait()
        results.append(sync.run_sync(rt, run)["status"])

    threads = [threading.Thread(target=contender, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["skipped", "skipped", "succeeded"]


def test_a_partner_limited_sync_touches_only_that_partner(sync_app, directory_standin):
    _run(sync_app)
    d = directory_standin.directory
    d.add_partner("ptn_s2")
    d.add_tenant("tnt_other", "ptn_s2")
    d.add_user("usr_other", "tnt_other", "o@other.example")
    d.remove("users", "usr_s9")
    run = _run(sync_app, partner_id="ptn_s2")
    assert run["status"] == "succeeded" and run["kind"] == "partner"
    db = sync_app.extensions["scaivault"].db
    assert db.scalar("SELECT deleted_at IS NULL FROM identity_users WHERE id = 'usr_other'") is True
    assert db.scalar("SELECT deleted_at IS NULL FROM identity_users WHERE id = 'usr_s9'") is True  # other partner untouched


def test_post_sync_answers_202_and_history_records_the_run(sync_app, directory_standin, auth):
    client = sync_app.test_client()
    admin = directory_standin.mint(sub="usr_adm", tenant_id="tnt_s1", scopes=("identity:admin", "identity:read"),
                                   role="super_admin")
    resp = client.post("/v1/identity/sync", headers=auth(admin))
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["sync_id"].startswith("sync_") and body["status"] == "queued" and body["started_at"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        history = client.get("/v1/identity/sync/history", headers=auth(admin)).get_json()
        run = next(r for r in history["syncs"] if r["sync_id"] == body["sync_id"])
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert run["status"] == "succeeded" and run["counts"]["users"] == 6


def test_post_sync_needs_identity_admin(sync_app, directory_standin, auth):
    reader = directory_standin.mint(sub="usr_r", tenant_id="tnt_s1", scopes=("identity:read",))
    resp = sync_app.test_client().post("/v1/identity/sync", headers=auth(reader))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "insufficient_scope"


def test_the_scheduled_job_skips_a_tick_right_after_a_successful_sync(sync_app):
    rt = sync_app.extensions["scaivault"]
    first = job.run_scheduled_sync(rt)
    assert first["status"] == "succeeded" and first["trigger"] == "schedule"
    assert job.run_scheduled_sync(rt) is None


def test_the_job_registers_on_an_apscheduler_scheduler(sync_app):
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler()
    job.register(scheduler, sync_app.extensions["scaivault"])
    (registered,) = scheduler.get_jobs()
    assert registered.id == job.JOB_ID
    assert registered.trigger.interval.total_seconds() == 15 * 60


def test_wrong_client_credentials_fail_the_run_cleanly(make_app, fresh_database_url, directory_standin, tmp_path):
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url)).apply()
    (tmp_path / "wrong").write_text("nope")
    app = make_app(DATABASE_URL=fresh_database_url, SCAIKEY_URL=directory_standin.url, SCAIKEY_CLIENT_ID="sync-client",
                   SCAIKEY_CLIENT_SECRET_FILE=str(tmp_path / "wrong"))
    run = _run(app)
    assert run["status"] == "failed" and "credentials" in run["error"]


def test_the_worker_scheduler_carries_the_identity_sync_job(sync_app):
    from scaivault.jobs.scheduler import start_scheduler

    scheduler = start_scheduler(sync_app.extensions["scaivault"])
    try:
        ids = {j.id for j in scheduler.get_jobs()}
        assert job.JOB_ID in ids
        first = scheduler.get_job(job.JOB_ID).next_run_time
        assert 0 < (first - sync.utcnow()).total_seconds() <= 31
    finally:
        scheduler.shutdown(wait=False)


def test_a_scheduled_tick_that_finds_a_sync_running_leaves_no_history_row(sync_app):
    rt = sync_app.extensions["scaivault"]
    with rt.db.session() as holder:
        holder.scalar("SELECT pg_advisory_lock(:k)", k=sync.SYNC_LOCK_KEY)
        try:
            assert job.run_scheduled_sync(rt) is None
        finally:
            holder.scalar("SELECT pg_advisory_unlock(:k)", k=sync.SYNC_LOCK_KEY)
    assert rt.db.scalar("SELECT count(*) FROM identity_sync_runs") == 0


def test_a_tenant_user_triggers_a_sync_of_its_own_tenant_only(sync_app, directory_standin, auth):
    client = sync_app.test_client()
    user = directory_standin.mint(sub="usr_s1", tenant_id="tnt_s1", partner_id="ptn_s1",
                                  scopes=("identity:admin", "identity:read"))
    resp = client.post("/v1/identity/sync", headers=auth(user))
    assert resp.status_code == 202
    run = sync_app.extensions["scaivault"].db.one("SELECT kind, tenant_id FROM identity_sync_runs WHERE id = :id",
                                                  id=resp.get_json()["sync_id"])
    assert run == {"kind": "tenant", "tenant_id": "tnt_s1"}
    assert client.post("/v1/identity/sync?tenant_id=tnt_s2", headers=auth(user)).status_code == 404
    assert client.post("/v1/identity/sync?partner_id=ptn_s1", headers=auth(user)).status_code == 403
    for _ in range(100):
        rows = client.get("/v1/identity/sync/history", headers=auth(user)).get_json()["syncs"]
        if rows and rows[0]["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert [r["tenant_id"] for r in rows] == ["tnt_s1"]


def test_a_failure_while_applying_rolls_the_whole_sync_back(sync_app, directory_standin):
    _run(sync_app)
    db = sync_app.extensions["scaivault"].db
    before = db.query("SELECT id, email, deleted_at FROM identity_users ORDER BY id")
    directory_standin.directory.remove("users", "usr_s3")                 # would be soft-deleted...
    directory_standin.directory.add_user("usr_bad", "tnt_s2", "bad\x00@two.example")   # ...but this row cannot be stored
    run = _run(sync_app)
    assert run["status"] == "failed"
    assert db.query("SELECT id, email, deleted_at FROM identity_users ORDER BY id") == before


def test_the_cli_runs_one_sync_and_prints_it(base_env, fresh_database_url, directory_standin):
    import json
    import os
    import subprocess
    import sys

    MigrationRunner(DatabaseURL.parse("DATABASE_URL", fresh_database_url)).apply()
    env = {**os.environ, **base_env, "DATABASE_URL": fresh_database_url, "SCAIKEY_URL": directory_standin.url,
           "SCAIKEY_CLIENT_ID": "sync-client", "SCAIKEY_CLIENT_SECRET_FILE": directory_standin.secret_path}
    done = subprocess.run([sys.executable, "-m", "scaivault.cli", "identity", "sync", "--tenant", "tnt_s1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["status"] == "succeeded" and run["kind"] == "tenant" and run["counts"]["users"] == 5


def test_a_directory_that_suddenly_lists_nothing_does_not_wipe_the_cache(sync_app, directory_standin):
    _run(sync_app)
    d = directory_standin.directory
    d.partners.clear(), d.tenants.clear(), d.users.clear(), d.groups.clear()
    run = _run(sync_app)
    assert run["status"] == "failed" and "refusing" in run["error"]
    db = sync_app.extensions["scaivault"].db
    assert db.scalar("SELECT count(*) FROM identity_users WHERE deleted_at IS NULL") == 6


def test_runs_that_died_are_marked_interrupted_by_the_next_run(sync_app):
    rt = sync_app.extensions["scaivault"]
    dead = sync.new_run(rt, trigger="api")
    rt.db.execute("UPDATE identity_sync_runs SET status = 'running' WHERE id = :id", id=dead["id"])
    lost = sync.new_run(rt, trigger="api")
    rt.db.execute("UPDATE identity_sync_runs SET started_at = now() - interval '1 hour' WHERE id = :id", id=lost["id"])
    assert _run(sync_app)["status"] == "succeeded"
    rows = {r["id"]: (r["status"], r["error"]) for r in rt.db.query("SELECT id, status, error FROM identity_sync_runs")}
    assert rows[dead["id"]] == ("failed", "interrupted") and rows[lost["id"]] == ("failed", "interrupted")


def test_the_gunicorn_worker_hook_starts_the_scheduler_beside_the_app(sync_app, monkeypatch):
    from types import SimpleNamespace

    from scaivault.jobs import scheduler as worker_jobs

    monkeypatch.setattr(worker_jobs, "WORKER_START_DELAY_SECONDS", (0.0, 0.0))
    rt = sync_app.extensions["scaivault"]
    worker_jobs.start_in_worker(SimpleNamespace(wsgi=sync_app))
    deadline = time.monotonic() + 5
    while "scheduler" not in rt.__dict__ and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler = rt.__dict__.pop("scheduler")
    try:
        assert scheduler.get_job(job.JOB_ID) is not None
    finally:
        scheduler.shutdown(wait=False)
