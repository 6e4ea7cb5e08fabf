"""The secret store over HTTP: spec/20 sections 3-4 and acceptance scenarios 2, 3, 4, 8, 9, 11."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, grant, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS, SECRET_MAX_VERSIONS_DEFAULT="5")


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(callers, tenant):
    return callers.admin(tenant)


def db(app):
    return app.extensions["scaivault"].db


def audit_rows(app, tenant, **where):
    clauses = " ".join(f"AND {k} = :{k}" for k in where)
    return db(app).query(f"SELECT action, success, secret_path, identity_id, extra_data FROM audit_log "
                         f"WHERE tenant_id = :tenant {clauses} ORDER BY ts, id", tenant=tenant, **where)


def _iso(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ----------------------------------------------------------------- scenario 2 and 3
def test_first_write_creates_version_1_and_read_returns_data_metadata_and_timestamps(admin):
    body = {"secret_type": "json", "data": {"username": "svc", "password": "s3cr3t"},
            "metadata": {"description": "primary db", "tags": ["db", "prod"]}}
    resp = admin.put("/v1/secrets/environments/prod/api/db", json=body)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["version"] == 1
    assert "data" not in resp.get_json()
    got = admin.get("/v1/secrets/environments/prod/api/db")
    assert got.status_code == 200
    doc = got.get_json()
    assert doc["data"] == body["data"] and doc["version"] == 1 and doc["secret_type"] == "json"
    assert doc["metadata"] == body["metadata"]
    assert doc["created_at"].endswith("Z") and doc["updated_at"].endswith("Z")
    assert doc["expires_at"] is None


def test_a_second_write_is_version_2_and_version_1_stays_readable(admin):
    admin.put("/v1/secrets/app/cfg/main", json={"data": {"v": "one"}})
    resp = admin.put("/v1/secrets/app/cfg/main", json={"data": {"v": "two"}})
    assert resp.status_code == 200 and resp.get_json()["version"] == 2
    assert admin.get("/v1/secrets/app/cfg/main").get_json()["data"] == {"v": "two"}
    old = admin.get("/v1/secrets/app/cfg/main?version=1")
    assert old.status_code == 200 and old.get_json()["data"] == {"v": "one"} and old.get_json()["version"] == 1
    missing = admin.get("/v1/secrets/app/cfg/main?version=99")
    assert missing.status_code == 404 and error_code(missing) == "version_not_found"


def test_reading_a_missing_secret_is_404_secret_not_found_with_the_path(admin):
    resp = admin.get("/v1/secrets/no/such/secret")
    assert resp.status_code == 404
    assert error_code(resp) == "secret_not_found"
    assert resp.get_json()["error"]["details"]["path"] == "no/such/secret"


# ----------------------------------------------------------------- scenario 4: options
def _rotation_policy(app, tenant, policy_id):
    """A rotation policy row of `tenant` (its API is issue 11's; these tests need only the reference)."""
    db(app).execute("INSERT INTO rotation_policies (id, tenant_id, name, interval_text, interval_seconds, grace_seconds) "
                    "VALUES (:id, :t, :id, '30d', 2592000, 172800)", id=policy_id, t=tenant)


def test_write_options_are_accepted_and_expires_at_is_90_days_ahead(admin, app, tenant):
    _rotation_policy(app, tenant, "rot_monthly_" + tenant)
    resp = admin.put("/v1/secrets/app/opt/a", json={
        "data": {"k": "v"}, "options": {"max_versions": 10, "expires_in": "90d", "rotation_policy_id": "rot_monthly_" + tenant}})
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    assert doc["max_versions"] == 10 and doc["rotation_policy_id"] == "rot_monthly_" + tenant
    delta = _iso(doc["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(days=89, hours=23) < delta <= timedelta(days=90)


@pytest.mark.parametrize("duration", ["90 days", "soon", "5y", "", "-1d"])
def test_a_bad_duration_is_400_invalid_duration(admin, duration):
    resp = admin.put("/v1/secrets/app/opt/bad", json={"data": {"k": "v"}, "options": {"expires_in": duration}})
    assert resp.status_code == 400 and error_code(resp) == "invalid_duration"


def test_max_versions_prunes_the_oldest_versions(admin):
    for i in range(1, 5):
        admin.put("/v1/secrets/app/prune/x", json={"data": {"i": i}, "options": {"max_versions": 2}})
    versions = admin.get("/v1/secrets/app/prune/x:versions").get_json()
    assert [v["version"] for v in versions["versions"]] == [4, 3]
    pruned = admin.get("/v1/secrets/app/prune/x?version=1")
    assert pruned.status_code == 404 and error_code(pruned) == "version_not_found"


def test_the_default_max_versions_comes_from_settings(admin):
    for i in range(7):
        admin.put("/v1/secrets/app/prune/default", json={"data": {"i": i}})
    versions = admin.get("/v1/secrets/app/prune/default:versions").get_json()
    assert versions["max_versions"] == 5
    assert [v["version"] for v in versions["versions"]] == [7, 6, 5, 4, 3]


def test_reading_an_expired_secret_is_410_secret_expired(app, admin, tenant):
    admin.put("/v1/secrets/app/exp/token", json={"data": {"t": "x"}, "options": {"expires_in": "1h"}})
    db(app).execute("UPDATE secrets SET expires_at = now() - interval '1 second' WHERE tenant_id = :t AND path = :p",
                    t=tenant, p="app/exp/token")
    resp = admin.get("/v1/secrets/app/exp/token")
    assert resp.status_code == 410 and error_code(resp) == "secret_expired"
    assert admin.get("/v1/secrets/app/exp/token:metadata").get_json()["expired"] is True
    renewed = admin.put("/v1/secrets/app/exp/token", json={"data": {"t": "y"}})
    assert renewed.get_json()["expires_at"] is None
    assert admin.get("/v1/secrets/app/exp/token").status_code == 200


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize("path", ["App/db", "app//db", "app/db.key", "app/db%20x", "/".join(["s"] * 11), "a" * 513])
def test_paths_breaking_the_rules_are_400_invalid_path(admin, path):
    resp = admin.put(f"/v1/secrets/{path}", json={"data": {"k": "v"}})
    assert resp.status_code == 400 and error_code(resp) == "invalid_path"
    assert admin.get(f"/v1/secrets/{path}").status_code == 400


def test_a_trailing_slash_path_is_invalid_path(admin):
    resp = admin.put("/v1/secrets/app/db/", json={"data": {"k": "v"}})
    assert resp.status_code in (400, 404)
    assert error_code(resp) in ("invalid_path", "not_found")


def test_an_unknown_secret_type_is_400_invalid_secret_type(admin):
    resp = admin.put("/v1/secrets/app/t/x", json={"data": {"k": "v"}, "secret_type": "password"})
    assert resp.status_code == 400 and error_code(resp) == "invalid_secret_type"


@pytest.mark.parametrize("body", [{"data": "text"}, {"data": [1, 2]}, {}, {"data": {}, "extra": 1},
                                  {"data": {}, "options": {"max_versions": 0}}, {"data": {}, "options": {"cas": -1}}])
def test_bodies_of_the_wrong_shape_are_422_validation_error_with_fields(admin, body):
    resp = admin.put("/v1/secrets/app/t/shape", json=body)
    assert resp.status_code == 422 and error_code(resp) == "validation_error"
    assert resp.get_json()["error"]["details"]["fields"]


def test_malformed_json_is_400_invalid_request(admin):
    resp = admin.put("/v1/secrets/app/t/json", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and error_code(resp) == "invalid_request"


def test_data_over_max_secret_bytes_is_413_and_nothing_is_stored(make_app, scaikey, tenant):
    small = make_app(RATE_LIMITS=HIGH_RATE_LIMITS, MAX_SECRET_BYTES="1k")
    admin = Callers(scaikey, small.test_client()).admin(tenant)
    resp = admin.put("/v1/secrets/app/big/blob", json={"data": {"blob": "x" * 2000}})
    assert resp.status_code == 413 and error_code(resp) == "payload_too_large"
    assert admin.get("/v1/secrets/app/big/blob").status_code == 404


def test_bad_version_query_is_400_invalid_request(admin):
    assert error_code(admin.get("/v1/secrets/app/x?version=abc")) == "invalid_request"
    assert error_code(admin.get("/v1/secrets/app/x?version=0")) == "invalid_request"


# ----------------------------------------------------------------- check-and-set
def test_cas_zero_creates_only_and_cas_n_requires_version_n(admin):
    assert admin.put("/v1/secrets/app/cas/a", json={"data": {"v": 1}, "options": {"cas": 0}}).status_code == 201
    again = admin.put("/v1/secrets/app/cas/a", json={"data": {"v": 2}, "options": {"cas": 0}})
    assert again.status_code == 409 and error_code(again) == "version_conflict"
    assert again.get_json()["error"]["details"]["current_version"] == 1
    assert admin.put("/v1/secrets/app/cas/a", json={"data": {"v": 2}, "options": {"cas": 1}}).status_code == 200
    stale = admin.put("/v1/secrets/app/cas/a", json={"data": {"v": 3}, "options": {"cas": 1}})
    assert stale.status_code == 409 and error_code(stale) == "version_conflict"
    assert admin.get("/v1/secrets/app/cas/a").get_json()["data"] == {"v": 2}


# ----------------------------------------------------------------- metadata, versions
def test_metadata_patch_merges_and_does_not_create_a_version(admin):
    admin.put("/v1/secrets/app/md/a", json={"data": {"k": "v"}, "metadata": {"owner": "team:a", "tags": ["x"],
                                                                             "ticket": "T-1"}})
    resp = admin.patch("/v1/secrets/app/md/a:metadata", json={"metadata": {"tags": ["x", "y"], "ticket": None},
                                                              "max_versions": 3})
    assert resp.status_code == 200, resp.get_json()
    doc = resp.get_json()
    assert doc["metadata"] == {"owner": "team:a", "tags": ["x", "y"]}
    assert doc["version"] == 1 and doc["max_versions"] == 3
    assert admin.get("/v1/secrets/app/md/a").get_json()["version"] == 1


def test_metadata_read_has_version_count_tags_and_rotation_status(admin, app, tenant):
    _rotation_policy(app, tenant, "rot_x_" + tenant)
    admin.put("/v1/secrets/app/md/b", json={"data": {"k": "1"}, "metadata": {"tags": ["t"]},
                                            "options": {"rotation_policy_id": "rot_x_" + tenant}})
    admin.put("/v1/secrets/app/md/b", json={"data": {"k": "2"}})
    doc = admin.get("/v1/secrets/app/md/b:metadata").get_json()
    assert doc["version_count"] == 2 and doc["metadata"]["tags"] == ["t"]
    assert doc["rotation"] == {"policy_id": "rot_x_" + tenant, "enabled": True}
    assert "data" not in doc


def test_versions_list_shows_author_time_and_state(admin):
    admin.put("/v1/secrets/app/ver/a", json={"data": {"k": "1"}})
    admin.put("/v1/secrets/app/ver/a", json={"data": {"k": "2"}})
    doc = admin.get("/v1/secrets/app/ver/a:versions").get_json()
    assert doc["current_version"] == 2
    first = doc["versions"][-1]
    assert first["version"] == 1 and first["state"] == "active" and first["created_by"] == admin.identity_id
    assert doc["versions"][0]["current"] is True


# ----------------------------------------------------------------- delete, restore, destroy
def test_soft_delete_is_restorable_and_blocks_writes_with_secret_exists(admin):
    admin.put("/v1/secrets/app/del/a", json={"data": {"k": "v"}})
    resp = admin.delete("/v1/secrets/app/del/a")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["permanent"] is False
    until = _iso(doc["recoverable_until"]) - datetime.now(timezone.utc)
    assert timedelta(days=29, hours=23) < until <= timedelta(days=30)
    gone = admin.get("/v1/secrets/app/del/a")
    assert gone.status_code == 404 and error_code(gone) == "secret_not_found"
    assert gone.get_json()["error"]["details"]["deleted"] is True
    blocked = admin.put("/v1/secrets/app/del/a", json={"data": {"k": "w"}})
    assert blocked.status_code == 409 and error_code(blocked) == "secret_exists"
    listed = admin.get("/v1/secrets?prefix=app/del/").get_json()["secrets"]
    assert listed == []
    assert [s["path"] for s in admin.get("/v1/secrets?prefix=app/del/&include_deleted=true").get_json()["secrets"]] == ["app/del/a"]
    restored = admin.post("/v1/secrets/app/del/a:restore")
    assert restored.status_code == 200
    assert admin.get("/v1/secrets/app/del/a").get_json()["data"] == {"k": "v"}


def test_after_retention_a_deleted_path_starts_again_at_version_1(app, admin, tenant):
    admin.put("/v1/secrets/app/del/old", json={"data": {"k": "1"}})
    admin.put("/v1/secrets/app/del/old", json={"data": {"k": "2"}})
    admin.delete("/v1/secrets/app/del/old")
    db(app).execute("UPDATE secrets SET recoverable_until = now() - interval '1 second' WHERE tenant_id = :t AND path = :p",
                    t=tenant, p="app/del/old")
    assert admin.post("/v1/secrets/app/del/old:restore").status_code == 404
    resp = admin.put("/v1/secrets/app/del/old", json={"data": {"k": "new"}})
    assert resp.status_code == 201 and resp.get_json()["version"] == 1


def test_permanent_delete_removes_every_version_and_its_ciphertext(app, admin, tenant):
    admin.put("/v1/secrets/app/del/perm", json={"data": {"k": "1"}})
    admin.put("/v1/secrets/app/del/perm", json={"data": {"k": "2"}})
    resp = admin.delete("/v1/secrets/app/del/perm?permanent=true")
    assert resp.status_code == 200 and resp.get_json()["permanent"] is True and resp.get_json()["version_count"] == 2
    left = db(app).query("SELECT count(*) AS n FROM secret_versions WHERE tenant_id = :t", t=tenant)
    rows = db(app).query("SELECT v.id FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
                         "WHERE s.tenant_id = :t AND s.path = 'app/del/perm'", t=tenant)
    assert rows == [] and left[0]["n"] >= 0
    assert admin.get("/v1/secrets/app/del/perm").status_code == 404
    assert admin.put("/v1/secrets/app/del/perm", json={"data": {"k": "3"}}).get_json()["version"] == 1


def test_destroyed_versions_lose_their_ciphertext_and_read_as_410(app, admin, tenant):
    for i in (1, 2, 3):
        admin.put("/v1/secrets/app/destroy/a", json={"data": {"i": i}})
    resp = admin.post("/v1/secrets/app/destroy/a:destroy", json={"versions": [1, 2]})
    assert resp.status_code == 200 and resp.get_json()["destroyed"] == [1, 2]
    rows = db(app).query("SELECT v.version, v.sealed_data FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
                         "WHERE s.tenant_id = :t AND s.path = 'app/destroy/a' ORDER BY v.version", t=tenant)
    assert [(r["version"], r["sealed_data"] is None) for r in rows] == [(1, True), (2, True), (3, False)]
    gone = admin.get("/v1/secrets/app/destroy/a?version=1")
    assert gone.status_code == 410 and error_code(gone) == "version_destroyed"
    assert admin.get("/v1/secrets/app/destroy/a").get_json()["data"] == {"i": 3}
    states = {v["version"]: v["state"] for v in admin.get("/v1/secrets/app/destroy/a:versions").get_json()["versions"]}
    assert states == {3: "active", 2: "destroyed", 1: "destroyed"}
    missing = admin.post("/v1/secrets/app/destroy/a:destroy", json={"versions": [3, 42]})
    assert missing.status_code == 404 and error_code(missing) == "version_not_found"
    assert admin.get("/v1/secrets/app/destroy/a").status_code == 200


def test_no_plaintext_is_stored_and_a_row_moved_to_another_path_does_not_open(app, admin, tenant):
    admin.put("/v1/secrets/app/seal/a", json={"data": {"password": "hunter2-unique-marker"}})
    admin.put("/v1/secrets/app/seal/b", json={"data": {"password": "other"}})
    raw = db(app).query("SELECT v.sealed_data FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
                        "WHERE s.tenant_id = :t", t=tenant)
    assert raw and all(b"hunter2-unique-marker" not in bytes(r["sealed_data"]) for r in raw)
    # copy a's ciphertext over b's: opening it under b's path must fail, not leak a's value
    db(app).execute("""UPDATE secret_versions SET sealed_data = (SELECT v.sealed_data FROM secret_versions v
                         JOIN secrets s ON s.id = v.secret_id WHERE s.tenant_id = :t AND s.path = 'app/seal/a')
                       WHERE secret_id = (SELECT id FROM secrets WHERE tenant_id = :t AND path = 'app/seal/b')""", t=tenant)
    resp = admin.get("/v1/secrets/app/seal/b")
    assert resp.status_code >= 400 and b"hunter2" not in resp.data


# ----------------------------------------------------------------- listing
def _seed(admin, paths, **extra):
    for p in paths:
        assert admin.put(f"/v1/secrets/{p}", json={"data": {"k": "v"}, **extra}).status_code == 201


def test_listing_is_keyset_paginated_in_path_order(admin):
    paths = [f"list/page/s{i:02d}" for i in range(25)]
    _seed(admin, paths)
    seen, cursor = [], None
    while True:
        url = "/v1/secrets?prefix=list/page/&limit=10" + (f"&cursor={cursor}" if cursor else "")
        doc = admin.get(url).get_json()
        seen += [s["path"] for s in doc["secrets"]]
        if not doc["has_more"]:
            assert doc["cursor"] is None
            break
        cursor = doc["cursor"]
    assert seen == paths


def test_listing_with_a_delimiter_shows_one_level_of_folders_and_secrets(admin):
    _seed(admin, ["tree/a/x", "tree/a/y/z", "tree/b", "tree/c/d/e", "tree/c/f", "treehouse/q"])
    doc = admin.get("/v1/secrets?prefix=tree/&delimiter=/").get_json()
    assert doc["folders"] == ["tree/a/", "tree/c/"]
    assert [s["path"] for s in doc["secrets"]] == ["tree/b"]
    paged = admin.get("/v1/secrets?prefix=tree/&delimiter=/&limit=1").get_json()
    assert paged["folders"] == ["tree/a/"] and paged["has_more"]
    rest = admin.get(f"/v1/secrets?prefix=tree/&delimiter=/&limit=5&cursor={paged['cursor']}").get_json()
    assert [s["path"] for s in rest["secrets"]] == ["tree/b"] and rest["folders"] == ["tree/c/"]


def test_listing_filters_by_tag_owner_and_substring(admin):
    admin.put("/v1/secrets/filt/a-db", json={"data": {"k": 1}, "metadata": {"tags": ["db"], "owner": "team:x"}})
    admin.put("/v1/secrets/filt/b-cache", json={"data": {"k": 1}, "metadata": {"tags": ["cache"], "owner": "team:y"}})
    admin.put("/v1/secrets/filt/c-db2", json={"data": {"k": 1}, "metadata": {"tags": ["db"], "owner": "team:y"}})
    names = lambda q: [s["path"] for s in admin.get("/v1/secrets?prefix=filt/&" + q).get_json()["secrets"]]  # noqa: E731
    assert names("tag=db") == ["filt/a-db", "filt/c-db2"]
    assert names("owner=team:y") == ["filt/b-cache", "filt/c-db2"]
    assert names("q=cache") == ["filt/b-cache"]
    assert names("tag=db&owner=team:y") == ["filt/c-db2"]


@pytest.mark.parametrize("cursor", ["garbage", "eyJub3BlIjogMX0", "%%%"])
def test_a_malformed_cursor_is_400_invalid_cursor(admin, cursor):
    resp = admin.get(f"/v1/secrets?cursor={cursor}")
    assert resp.status_code == 400 and error_code(resp) == "invalid_cursor"


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "delimiter=:", "prefix=Bad/"])
def test_bad_listing_parameters_are_400(admin, query):
    resp = admin.get("/v1/secrets?" + query)
    assert resp.status_code == 400 and error_code(resp) in ("invalid_request", "invalid_path")


def test_a_listing_never_shows_a_path_the_caller_may_not_list(callers, admin, tenant):
    _seed(admin, ["vis/team-a/db", "vis/team-a/api", "vis/team-b/db", "vis/team-b/secret/x", "vis/open/one"])
    user = callers.user("lister@acme.example", tenant, scopes=("secrets:list",))
    grant(admin, user.identity_id, [{"path_pattern": "vis/team-a/*", "permissions": ["list"]},
                                    {"path_pattern": "vis/open/**", "permissions": ["list"]},
                                    {"path_pattern": "vis/team-b/db", "permissions": ["list"]}])
    flat = [s["path"] for s in user.get("/v1/secrets?prefix=vis/").get_json()["secrets"]]
    assert flat == ["vis/open/one", "vis/team-a/api", "vis/team-a/db", "vis/team-b/db"]
    level = user.get("/v1/secrets?prefix=vis/&delimiter=/").get_json()
    assert level["folders"] == ["vis/open/", "vis/team-a/", "vis/team-b/"]
    inner = user.get("/v1/secrets?prefix=vis/team-b/&delimiter=/").get_json()
    assert inner["folders"] == [] and [s["path"] for s in inner["secrets"]] == ["vis/team-b/db"]
    nobody = callers.user("nolist@acme.example", tenant, scopes=("secrets:list",))
    assert nobody.get("/v1/secrets?prefix=vis/").get_json()["secrets"] == []


# ----------------------------------------------------------------- scenario 8: list-only caller
def test_a_list_only_caller_reads_metadata_but_not_the_value(callers, admin, tenant):
    admin.put("/v1/secrets/app/exists/a", json={"data": {"k": "v"}, "metadata": {"tags": ["t1"]}})
    lister = callers.user("metaonly@acme.example", tenant, scopes=("secrets:list",))
    grant(admin, lister.identity_id, [{"path_pattern": "app/exists/*", "permissions": ["list"]}])
    meta = lister.get("/v1/secrets/app/exists/a:metadata")
    assert meta.status_code == 200 and meta.get_json()["version_count"] == 1
    assert meta.get_json()["metadata"]["tags"] == ["t1"] and "data" not in meta.get_json()
    value = lister.get("/v1/secrets/app/exists/a")
    assert value.status_code == 403 and error_code(value) == "insufficient_scope"
    missing = lister.get("/v1/secrets/app/exists/zzz:metadata")
    assert missing.status_code == 404 and error_code(missing) == "secret_not_found"


# ----------------------------------------------------------------- scenario 9: batch
def test_batch_read_gives_partial_success_with_per_path_errors(callers, admin, tenant):
    _seed(admin, ["batch/ok/a", "batch/ok/b", "batch/no/c"])
    reader = callers.user("batcher@acme.example", tenant, scopes=("secrets:read",))
    grant(admin, reader.identity_id, [{"path_pattern": "batch/ok/*", "permissions": ["read"]}])
    resp = reader.post("/v1/secrets/batch", json={"paths": ["batch/ok/a", "batch/ok/b", "batch/no/c"]})
    assert resp.status_code == 200, resp.get_json()
    doc = resp.get_json()
    assert set(doc["secrets"]) == {"batch/ok/a", "batch/ok/b"}
    assert doc["secrets"]["batch/ok/a"] == {"data": {"k": "v"}, "version": 1, "secret_type": "kv"}
    assert doc["errors"] == {"batch/no/c": {"code": "access_denied", "message": doc["errors"]["batch/no/c"]["message"]}}
    missing = reader.post("/v1/secrets/batch", json={"paths": ["batch/ok/a", "batch/ok/zz"]}).get_json()
    assert missing["errors"]["batch/ok/zz"]["code"] == "secret_not_found"
    failed = reader.post("/v1/secrets/batch", json={"paths": ["batch/ok/a", "batch/no/c"], "options": {"fail_fast": True}})
    assert failed.status_code == 403 and error_code(failed) == "access_denied"
    too_many = reader.post("/v1/secrets/batch", json={"paths": [f"batch/p{i}" for i in range(101)]})
    assert too_many.status_code == 422 and error_code(too_many) == "validation_error"


def test_batch_read_with_a_version_and_metadata(admin):
    admin.put("/v1/secrets/batch/v/a", json={"data": {"n": 1}})
    admin.put("/v1/secrets/batch/v/a", json={"data": {"n": 2}})
    admin.put("/v1/secrets/batch/v/b", json={"data": {"n": 1}, "metadata": {"tags": ["m"]}})
    doc = admin.post("/v1/secrets/batch", json={"paths": ["batch/v/a", "batch/v/b"],
                                                "options": {"version": 1, "include_metadata": True}}).get_json()
    assert doc["secrets"]["batch/v/a"]["data"] == {"n": 1}
    assert doc["secrets"]["batch/v/b"]["metadata"] == {"tags": ["m"]}


def test_batch_metadata_expands_wildcards_within_list_permission(callers, admin, tenant):
    _seed(admin, ["bm/svc-a/db", "bm/svc-b/db", "bm/svc-b/api", "bm/hidden/db"])
    lister = callers.user("bm@acme.example", tenant, scopes=("secrets:list",))
    grant(admin, lister.identity_id, [{"path_pattern": "bm/svc-*/**", "permissions": ["list"]}])
    doc = lister.post("/v1/secrets/batch/metadata", json={"paths": ["bm/*/db"], "options": {"expand_wildcards": True}})
    assert doc.status_code == 200, doc.get_json()
    assert sorted(doc.get_json()["secrets"]) == ["bm/svc-a/db", "bm/svc-b/db"]
    assert all("data" not in v for v in doc.get_json()["secrets"].values())
    plain = lister.post("/v1/secrets/batch/metadata", json={"paths": ["bm/svc-a/db", "bm/hidden/db"]}).get_json()
    assert list(plain["secrets"]) == ["bm/svc-a/db"] and plain["errors"]["bm/hidden/db"]["code"] == "access_denied"
    bad = lister.post("/v1/secrets/batch/metadata", json={"paths": ["bm/**x"], "options": {"expand_wildcards": True}})
    assert bad.get_json()["errors"]["bm/**x"]["code"] == "invalid_glob"


# ----------------------------------------------------------------- scenario 11: throttling
def test_exceeding_the_read_bucket_is_429_with_retry_after(make_app, scaikey, tenant):
    tight = make_app(RATE_LIMITS="secrets:read: {rate: 2, window: 1m}\nsecrets:write: {rate: 50, window: 1m}")
    admin = Callers(scaikey, tight.test_client()).admin(tenant)
    admin.put("/v1/secrets/rl/a", json={"data": {"k": "v"}})
    codes = [admin.get("/v1/secrets/rl/a").status_code for _ in range(3)]
    assert codes[:2] == [200, 200] and codes[2] == 429
    resp = admin.get("/v1/secrets/rl/a")
    assert error_code(resp) == "rate_limited" and int(resp.headers["Retry-After"]) >= 1


# ----------------------------------------------------------------- audit
def test_reads_writes_lists_and_denials_are_audited_without_values(app, callers, admin, tenant):
    admin.put("/v1/secrets/aud/a", json={"data": {"password": "never-in-audit"}})
    admin.get("/v1/secrets/aud/a")
    admin.get("/v1/secrets?prefix=aud/")
    admin.delete("/v1/secrets/aud/a")
    stranger = callers.user("stranger@acme.example", tenant)
    assert stranger.get("/v1/secrets/aud/a").status_code == 403
    rows = audit_rows(app, tenant)
    summary = [(r["action"], r["success"], r["secret_path"]) for r in rows]
    assert ("write", True, "aud/a") in summary and ("read", True, "aud/a") in summary
    assert ("list", True, "aud/") in summary and ("delete", True, "aud/a") in summary
    assert ("read", False, "aud/a") in summary
    denial = [r for r in rows if r["action"] == "read" and not r["success"]][0]
    assert denial["identity_id"] == "user:stranger@acme.example" and denial["extra_data"]["error"] == "access_denied"
    assert "never-in-audit" not in str(rows)


def test_last_accessed_at_is_written_at_most_once_a_minute(app, admin, tenant):
    admin.put("/v1/secrets/touch/a", json={"data": {"k": "v"}})
    admin.get("/v1/secrets/touch/a")
    app.extensions["scaivault"].secret_store.flush_touches()
    first = db(app).query("SELECT last_accessed_at, xmin::text AS x FROM secrets WHERE tenant_id = :t AND path = 'touch/a'",
                          t=tenant)[0]
    assert first["last_accessed_at"] is not None
    for _ in range(5):
        admin.get("/v1/secrets/touch/a")
    app.extensions["scaivault"].secret_store.flush_touches()
    again = db(app).query("SELECT last_accessed_at, xmin::text AS x FROM secrets WHERE tenant_id = :t AND path = 'touch/a'",
                          t=tenant)[0]
    assert again == first            # same row version: no write per read


def test_listing_secrets_expiring_within_a_duration(admin):
    admin.put("/v1/secrets/soon/a", json={"data": {"k": 1}, "options": {"expires_in": "2d"}})
    admin.put("/v1/secrets/soon/b", json={"data": {"k": 1}, "options": {"expires_in": "60d"}})
    admin.put("/v1/secrets/soon/c", json={"data": {"k": 1}})
    names = [s["path"] for s in admin.get("/v1/secrets?prefix=soon/&expires_within=7d").get_json()["secrets"]]
    assert names == ["soon/a"]
    bad = admin.get("/v1/secrets?expires_within=soon")
    assert bad.status_code == 400 and error_code(bad) == "invalid_duration"


def test_level_listings_page_through_many_folders_and_secrets(callers, admin, tenant):
    paths = [f"lvl/f{i:02d}/x" for i in range(12)] + [f"lvl/f{i:02d}/y/z" for i in range(12)] + \
            [f"lvl/s{i:02d}" for i in range(7)]
    for p in paths:
        admin.put(f"/v1/secrets/{p}", json={"data": {"k": 1}})
    user = callers.user("lvl@acme.example", tenant, scopes=("secrets:list",))
    grant(admin, user.identity_id, [{"path_pattern": "lvl/**", "permissions": ["list"]},
                                    {"path_pattern": "lvl/f03/**", "permissions": ["list"], "effect": "deny"}])
    for caller, hidden in ((admin, set()), (user, {"lvl/f03/"})):
        seen, cursor = [], None
        while True:
            doc = caller.get("/v1/secrets?prefix=lvl/&delimiter=/&limit=5" + (f"&cursor={cursor}" if cursor else "")).get_json()
            seen += doc["folders"] + [s["path"] for s in doc["secrets"]]
            if not doc["has_more"]:
                break
            cursor = doc["cursor"]
        expected = {f"lvl/f{i:02d}/" for i in range(12)} | {f"lvl/s{i:02d}" for i in range(7)}
        assert sorted(seen) == sorted(expected - hidden) and len(seen) == len(set(seen))


def test_a_batch_costs_one_batch_unit_plus_one_read_unit_per_authorised_path(make_app, scaikey, tenant):
    limits = "secrets:read: {rate: 5, window: 1m}\nsecrets:batch: {rate: 50, window: 1m}\nsecrets:write: {rate: 50, window: 1m}"
    admin = Callers(scaikey, make_app(RATE_LIMITS=limits).test_client()).admin(tenant)
    for p in ("rb/a", "rb/b", "rb/c"):
        admin.put(f"/v1/secrets/{p}", json={"data": {"k": 1}})
    first = admin.post("/v1/secrets/batch", json={"paths": ["rb/a", "rb/b", "rb/c"]})
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "2"
    second = admin.post("/v1/secrets/batch", json={"paths": ["rb/a", "rb/b", "rb/c"]})
    assert second.status_code == 429 and error_code(second) == "rate_limited"
