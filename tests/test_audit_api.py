"""/v1/audit over HTTP: filters, pagination, trails, summary, verify, exports, fail-closed."""
from __future__ import annotations

import csv
import io
import json
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest

from scaivault.audit import AuditEntry, record_now
from tests.test_audit_writer import no_audit_insert_url  # noqa: F401  (fixture)
from tests.test_storage_azure_blob import API_VERSION as AZURE_API_VERSION
from tests.test_storage_azure_blob import azurite  # noqa: F401  (fixture)
from tests.test_storage_gcs import emulator  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def app(make_app):
    return make_app()


@pytest.fixture
def tenant_id():
    return "tnt_aud_" + secrets.token_hex(4)


@pytest.fixture
def admin_headers(scaikey, auth, tenant_id):
    token = scaikey.mint(sub="usr_auditor_" + tenant_id, email=f"auditor@{tenant_id}.example", tenant_id=tenant_id,
                         partner_id="ptn_aud", scopes=("audit:read", "audit:export"), role="tenant_admin")
    return auth(token)


@pytest.fixture
def runtime(app):
    return app.extensions["scaivault"]


BASE = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)


def seed(runtime, tenant_id):
    """Seven entries a minute apart, oldest first, with distinct values for every filter."""
    specs = [
        dict(action="write", identity_id="user:ann@x.io", identity_type="user", secret_path="db/prod/password",
             source_ip="10.0.0.1"),
        dict(action="read", identity_id="sa:reporting", identity_type="service_account", secret_path="db/prod/password",
             source_ip="10.0.0.2"),
        dict(action="read", identity_id="sa:reporting", identity_type="service_account", secret_path="db/prod_x/key",
             source_ip="10.0.0.2"),
        dict(action="read", identity_id="user:bob@x.io", identity_type="user", secret_path="db/prod/password",
             source_ip="10.0.0.3", success=False, extra_data={"error": "access_denied"}),
        dict(action="policy_create", identity_id="user:ann@x.io", identity_type="user", secret_path=None,
             source_ip="10.0.0.1", extra_data={"policy": "readers"}),
        dict(action="delete", identity_id="user:ann@x.io", identity_type="user", secret_path="app/api-key",
             source_ip="10.0.0.1"),
        dict(action="list", identity_id="sa:reporting", identity_type="service_account", secret_path="db",
             source_ip="10.0.0.2"),
    ]
    entries = []
    for i, spec in enumerate(specs):
        e = AuditEntry(tenant_id=tenant_id, partner_id="ptn_aud", user_agent="pytest", duration_ms=i,
                       request_id=f"req_seed_{tenant_id}_{i}", timestamp=BASE + timedelta(minutes=i), **spec)
        record_now(runtime, e)
        entries.append(e)
    return entries


def logs(client, headers, **params):
    response = client.get("/v1/audit/logs", query_string=params, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def seeded_ids(body):
    return [e["id"] for e in body["logs"] if e["action"] != "audit_query"]


def test_logs_are_listed_newest_first_with_every_field(client, runtime, admin_headers, tenant_id):
    entries = seed(runtime, tenant_id)
    body = logs(client, admin_headers, to=(BASE + timedelta(minutes=30)).isoformat())
    assert seeded_ids(body) == [e.id for e in reversed(entries)]
    first = body["logs"][-1]
    assert set(first) >= {"id", "timestamp", "action", "identity_type", "identity_id", "secret_path", "source_ip",
                          "user_agent", "success", "duration_ms", "request_id", "extra_data"}
    assert first["timestamp"].endswith("Z") and len(first["timestamp"]) == len("2026-01-01T00:00:00.000000Z")
    assert body["has_more"] is False and body["cursor"] is None


@pytest.mark.parametrize("params, expected", [
    ({"action": "read"}, [1, 2, 3]),
    ({"action": "write,delete"}, [0, 5]),
    ({"identity_id": "sa:reporting"}, [1, 2, 6]),
    ({"identity_type": "user"}, [0, 3, 4, 5]),
    ({"path_prefix": "db/prod/"}, [0, 1, 3]),
    ({"path_prefix": "db/prod_"}, [2]),          # "_" is literal, not a LIKE wildcard
    ({"success": "false"}, [3]),
    ({"source_ip": "10.0.0.3"}, [3]),
    ({"request_id": "SEED3"}, [3]),
    ({"from": "MIN2", "to": "MIN4"}, [2, 3, 4]),
])
def test_every_filter_of_the_spec_narrows_the_listing(client, runtime, admin_headers, tenant_id, params, expected):
    entries = seed(runtime, tenant_id)
    params = dict(params)
    if params.get("request_id") == "SEED3":
        params["request_id"] = entries[3].request_id
    for key in ("from", "to"):
        if key in params:
            params[key] = (BASE + timedelta(minutes=int(params[key][3:]))).isoformat().replace("+00:00", "Z")
    params.setdefault("to", (BASE + timedelta(minutes=30)).isoformat())
    body = logs(client, admin_headers, **params)
    assert sorted(seeded_ids(body)) == sorted(entries[i].id for i in expected)


def test_the_cursor_walks_every_entry_exactly_once(client, runtime, admin_headers, tenant_id):
    entries = seed(runtime, tenant_id)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, "to": (BASE + timedelta(minutes=30)).isoformat()}
        if cursor:
            params["cursor"] = cursor
        body = logs(client, admin_headers, **params)
        pages += 1
        seen += [e["id"] for e in body["logs"]]
        if not body["has_more"]:
            assert body["cursor"] is None
            break
        assert len(body["logs"]) == 3
        cursor = body["cursor"]
    assert seen == [e.id for e in reversed(entries)] and pages == 3


@pytest.mark.parametrize("params, status, code, field", [
    ({"cursor": "not-a-cursor"}, 400, "invalid_cursor", None),
    ({"limit": "1001"}, 400, "invalid_request", None),     # issue 16: one error for a bad limit
    ({"limit": "0"}, 400, "invalid_request", None),     # issue 16: one error for a bad limit
    ({"limit": "ten"}, 400, "invalid_request", None),     # issue 16: one error for a bad limit
    ({"from": "yesterday"}, 422, "validation_error", "from"),
    ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 422, "validation_error", "to"),
    ({"success": "maybe"}, 422, "validation_error", "success"),
    ({"identity_type": "robot"}, 422, "validation_error", "identity_type"),
])
def test_bad_query_parameters_get_the_error_envelope(client, admin_headers, params, status, code, field):
    response = client.get("/v1/audit/logs", query_string=params, headers=admin_headers)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code
    if field:
        assert field in error["details"]["fields"]


def test_another_tenants_entries_are_never_visible(client, runtime, admin_headers, tenant_id):
    seed(runtime, tenant_id)
    other = seed(runtime, tenant_id + "_other")
    body = logs(client, admin_headers, limit=1000)
    ids = {e["id"] for e in body["logs"]}
    assert not ids & {e.id for e in other}
    assert all(e["tenant_id"] == tenant_id for e in body["logs"])


def test_a_caller_without_an_admin_role_is_refused_and_the_refusal_is_audited(client, runtime, scaikey, auth, tenant_id):
    token = scaikey.mint(sub="usr_nosy", email="nosy@x.io", tenant_id=tenant_id, partner_id="ptn_aud",
                         scopes=("audit:read",))
    response = client.get("/v1/audit/logs", headers={**auth(token), "X-Request-ID": "req-nosy-1"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "access_denied"
    row = runtime.db.one("SELECT action, success, identity_id, tenant_id FROM audit_log WHERE request_id = :r",
                         r=response.headers["X-Request-ID"])
    assert row == {"action": "audit_query", "success": False, "identity_id": "user:nosy@x.io", "tenant_id": tenant_id}


def test_a_token_without_the_audit_scope_is_refused(client, scaikey, auth, tenant_id):
    token = scaikey.mint(sub="usr_noscope", tenant_id=tenant_id, partner_id="ptn_aud", scopes=("secrets:read",),
                         role="tenant_admin")
    response = client.get("/v1/audit/logs", headers=auth(token))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "insufficient_scope"


def test_reading_the_audit_log_is_itself_audited(client, runtime, admin_headers, tenant_id):
    response = client.get("/v1/audit/logs", query_string={"action": "read"},
                          headers={**admin_headers, "X-Request-ID": "req-q-1"})
    row = runtime.db.one("SELECT action, success, extra_data FROM audit_log WHERE request_id = :r",
                         r=response.headers["X-Request-ID"])
    assert row["action"] == "audit_query" and row["success"] is True
    assert row["extra_data"] == {"endpoint": "logs", "filters": ["action"], "actor": row["extra_data"]["actor"],
                                 "client_request_id": "req-q-1"}


def test_health_probes_and_metrics_scrapes_are_not_audited(client, runtime):
    for path in ("/v1/health", "/v1/health/ready", "/v1/version", "/v1/metrics"):
        response = client.get(path, headers={"X-Request-ID": "req-probe-" + path.replace("/", "-")})
        assert runtime.db.scalar("SELECT count(*) FROM audit_log WHERE request_id = :r",
                                 r=response.headers["X-Request-ID"]) == 0
    assert runtime.db.scalar("SELECT count(*) FROM audit_log WHERE extra_data->>'client_request_id' LIKE 'req-probe-%'") == 0


def test_the_secret_trail_answers_who_read_this_secret(client, runtime, admin_headers, tenant_id):
    entries = seed(runtime, tenant_id)
    response = client.get("/v1/audit/secrets/db/prod/password", headers=admin_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["path"] == "db/prod/password"
    assert sorted(e["id"] for e in body["logs"]) == sorted(entries[i].id for i in (0, 1, 3))
    summary = body["summary"]
    assert summary["window_days"] == 30 and summary["reads"] == 1 and summary["denied"] == 1
    readers = {i["identity_id"]: i for i in summary["identities"]}
    assert readers["sa:reporting"]["reads"] == 1 and readers["user:bob@x.io"]["denied"] == 1
    assert client.get("/v1/audit/secrets/Bad//Path", headers=admin_headers).status_code == 400


def test_the_identity_trail_lists_everything_one_identity_did(client, runtime, admin_headers, tenant_id):
    entries = seed(runtime, tenant_id)
    body = client.get("/v1/audit/identities/user:ann@x.io", headers=admin_headers).get_json()
    assert sorted(e["id"] for e in body["logs"]) == sorted(entries[i].id for i in (0, 4, 5))
    assert body["summary"]["total_events"] == 3
    assert body["summary"]["by_action"] == {"delete": 1, "policy_create": 1, "write": 1}
    assert {s["secret_path"] for s in body["summary"]["secrets"]} == {"db/prod/password", "app/api-key"}


def test_the_summary_starts_with_total_events(client, runtime, admin_headers, tenant_id):
    seed(runtime, tenant_id)
    response = client.get("/v1/audit/summary", query_string={"to": (BASE + timedelta(minutes=30)).isoformat()},
                          headers=admin_headers)
    body = response.get_json()
    assert list(body)[0] == "total_events" and body["total_events"] == 7
    assert body["failed_events"] == 1 and body["by_action"]["read"] == 3
    assert body["unique_identities"] == 3


def test_verify_reports_an_intact_chain_then_the_first_edited_row(client, runtime, admin_headers, tenant_id):
    entries = seed(runtime, tenant_id)
    body = client.get("/v1/audit/verify", headers=admin_headers).get_json()
    assert body["valid"] is True and body["entries_checked"] >= 7 and body["first_break"] is None
    runtime.db.execute("UPDATE audit_log SET success = true WHERE id = :id", id=entries[3].id)
    body = client.get("/v1/audit/verify", headers=admin_headers).get_json()
    assert body["valid"] is False
    assert body["first_break"]["entry_id"] == entries[3].id


def wait_for_export(client, headers, export_id, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        response = client.get(f"/v1/audit/exports/{export_id}", headers=headers)
        body = response.get_json()
        assert response.status_code == 200, body
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"export {export_id} did not finish: {body}")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_runs_as_a_job_and_its_files_hold_the_matching_entries(client, runtime, admin_headers, tenant_id, fmt):
    entries = seed(runtime, tenant_id)
    response = client.post("/v1/audit/export", headers={**admin_headers, "X-Request-ID": f"req-exp-{fmt}"}, json={
        "from": BASE.isoformat(), "to": (BASE + timedelta(minutes=30)).isoformat(), "format": fmt,
        "filters": {"action": "read,write"}})
    assert response.status_code == 202, response.get_json()
    created = response.get_json()
    assert created["status"] == "pending" and created["estimated_records"] == 4
    assert created["export_id"].startswith("exp_")
    job = wait_for_export(client, admin_headers, created["export_id"])
    assert job["status"] == "completed", job
    assert job["records_written"] == 4 and len(job["manifest"]) == 1
    download = client.get(f"/v1/audit/exports/{created['export_id']}/files/1", headers=admin_headers)
    assert download.status_code == 200
    text = download.get_data(as_text=True)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [entries[i].id for i in (0, 1, 2, 3)]
    assert {r["action"] for r in rows} == {"read", "write"}
    listed = client.get("/v1/audit/exports", headers=admin_headers).get_json()["exports"]
    assert created["export_id"] in [e["export_id"] for e in listed]
    audit_row = runtime.db.one("SELECT action, extra_data FROM audit_log WHERE request_id = :r",
                               r=response.headers["X-Request-ID"])
    assert audit_row["action"] == "export_created"
    assert audit_row["extra_data"]["export_id"] == created["export_id"]
    # the stored file is sealed, not plaintext
    stored = runtime.storage.get(job["manifest"][0]["key"])
    assert entries[0].id.encode() not in stored


def test_an_export_body_is_validated(client, admin_headers):
    for body, field in [({"format": "xml"}, "format"), ({"filters": {"colour": "red"}}, "filters.colour"),
                        ({"from": "soon"}, "from"), ({"destination": {"type": "ftp"}}, "destination.type"),
                        ({"filters": {"to": ""}}, "filters.to"), ({"to": ""}, "to")]:
        response = client.post("/v1/audit/export", headers=admin_headers, json=body)
        assert response.status_code == 422, body
        assert field in response.get_json()["error"]["details"]["fields"]
    assert client.get("/v1/audit/exports/exp_nope", headers=admin_headers).status_code == 404


def test_polling_an_export_does_not_spend_the_export_budget(make_app, admin_headers):
    client = make_app(RATE_LIMITS="audit:export: {rate: 1, window: 1h}").test_client()
    created = client.post("/v1/audit/export", headers=admin_headers, json={})
    assert created.status_code == 202
    for _ in range(5):
        polled = client.get(f"/v1/audit/exports/{created.get_json()['export_id']}", headers=admin_headers)
        assert polled.status_code == 200
    assert client.post("/v1/audit/export", headers=admin_headers, json={}).status_code == 429


def test_an_audited_request_returns_503_and_no_data_when_the_audit_insert_fails(
        make_app, no_audit_insert_url, admin_headers, tenant_id):  # noqa: F811
    app = make_app(DATABASE_URL=no_audit_insert_url)
    response = app.test_client().get("/v1/audit/logs", headers=admin_headers)
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["code"] == "audit_unavailable"
    assert "logs" not in body


@pytest.fixture
def s3_server():
    """moto's S3 over real HTTP on a free port, for this test alone."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def exporter_headers(scaikey, auth, tenant_id):
    token = scaikey.mint(sub="usr_exporter_" + tenant_id, email=f"exporter@{tenant_id}.example", tenant_id=tenant_id,
                         partner_id="ptn_aud", role="tenant_admin",
                         scopes=("audit:read", "audit:export", "secrets:write", "secrets:read"))
    return auth(token)


def export_to(client, runtime, headers, tenant_id, destination_type, bucket, credentials):
    """Store `credentials` as a secret, export the seeded entries there; returns (job, entries)."""
    written = client.put("/v1/secrets/exports/creds", headers=headers, json={"data": credentials})
    assert written.status_code in (200, 201), written.get_json()
    entries = seed(runtime, tenant_id)
    response = client.post("/v1/audit/export", headers=headers, json={
        "from": BASE.isoformat(), "to": (BASE + timedelta(minutes=30)).isoformat(), "format": "jsonl",
        "destination": {"type": destination_type, "bucket": bucket, "prefix": "scaivault/",
                        "credentials_path": "exports/creds"}})
    assert response.status_code == 202, response.get_json()
    job = wait_for_export(client, headers, response.get_json()["export_id"])
    assert job["status"] == "completed", job
    return job, entries


def object_key(job, scheme, bucket):
    uri = job["manifest"][0]["uri"]
    assert uri.startswith(f"{scheme}://{bucket}/scaivault/{job['export_id']}/part-00001.jsonl")
    return uri.split("/", 3)[3]


@pytest.mark.slow
def test_an_export_to_s3_uploads_with_credentials_read_from_a_secret(client, runtime, scaikey, auth, tenant_id,
                                                                      s3_server):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="audit-archive")
    headers = exporter_headers(scaikey, auth, tenant_id)
    job, entries = export_to(client, runtime, headers, tenant_id, "s3", "audit-archive", {
        "access_key_id": "testing", "secret_access_key": "testing", "endpoint_url": s3_server})
    body = s3.get_object(Bucket="audit-archive", Key=object_key(job, "s3", "audit-archive"))["Body"].read().decode()
    assert [json.loads(line)["id"] for line in body.splitlines()] == [e.id for e in entries]
    # the credentials were read under audit, as the requester, for this export
    read = runtime.db.one("SELECT identity_id, extra_data FROM audit_log WHERE tenant_id = :t AND action = 'read' "
                          "AND secret_path = 'exports/creds'", t=tenant_id)
    assert read["identity_id"] == f"user:exporter@{tenant_id}.example"
    assert read["extra_data"]["export_id"] == job["export_id"]
    assert "testing" not in json.dumps(job)


@pytest.mark.slow
def test_an_export_to_gcs_uploads_to_the_bucket(client, runtime, scaikey, auth, tenant_id, emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    headers = exporter_headers(scaikey, auth, tenant_id)
    job, entries = export_to(client, runtime, headers, tenant_id, "gcs", "scaivault-test",
                             {"endpoint": emulator.url, "project": "test"})
    gcs = storage.Client(project="test", credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": emulator.url})
    body = gcs.bucket("scaivault-test").blob(object_key(job, "gs", "scaivault-test")).download_as_bytes().decode()
    assert [json.loads(line)["id"] for line in body.splitlines()] == [e.id for e in entries]


@pytest.mark.slow
def test_an_export_to_azure_blob_uploads_to_the_container(client, runtime, scaikey, auth, tenant_id, azurite):
    from azure.storage.blob import BlobServiceClient

    headers = exporter_headers(scaikey, auth, tenant_id)
    job, entries = export_to(client, runtime, headers, tenant_id, "azure_blob", "scaivault-test",
                             {"connection_string": azurite.connection_string, "api_version": AZURE_API_VERSION})
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=AZURE_API_VERSION)
    body = service.get_container_client("scaivault-test").download_blob(
        object_key(job, "azure", "scaivault-test")).readall().decode()
    assert [json.loads(line)["id"] for line in body.splitlines()] == [e.id for e in entries]


def test_an_s3_export_needs_a_bucket_and_a_readable_credentials_secret(client, scaikey, auth, tenant_id):
    token = scaikey.mint(sub="usr_noread_" + tenant_id, email=f"noread@{tenant_id}.example", tenant_id=tenant_id,
                         partner_id="ptn_aud", scopes=("audit:export",), role=None)
    response = client.post("/v1/audit/export", headers=auth(token), json={"destination": {"type": "s3"}})
    assert response.status_code == 403   # not an admin of the tenant
    admin = scaikey.mint(sub="usr_adm_" + tenant_id, tenant_id=tenant_id, partner_id="ptn_aud",
                         scopes=("audit:export",), role="tenant_admin")
    response = client.post("/v1/audit/export", headers=auth(admin), json={"destination": {"type": "s3"}})
    assert response.status_code == 422
    assert set(response.get_json()["error"]["details"]["fields"]) == {"destination.bucket",
                                                                     "destination.credentials_path"}


@pytest.mark.slow
def test_no_query_string_makes_the_audit_endpoints_fail_with_a_500(client, admin_headers):
    from hypothesis import HealthCheck, given, settings, strategies as st

    keys = st.sampled_from(["from", "to", "action", "identity_id", "identity_type", "path_prefix", "success",
                            "source_ip", "request_id", "limit", "cursor"])

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(params=st.dictionaries(keys, st.text(max_size=40), max_size=4),
           where=st.sampled_from(["/v1/audit/logs", "/v1/audit/summary", "/v1/audit/verify",
                                  "/v1/audit/identities/user:x%00y", "/v1/audit/secrets/a/b"]))
    def check(params, where):
        response = client.get(where, query_string=params, headers=admin_headers)
        assert response.status_code < 500, (where, params, response.get_json())
        assert response.is_json

    check()


def test_the_platform_chain_is_verified_by_super_admins_only(client, runtime, scaikey, auth, admin_headers, tenant_id):
    record_now(runtime, AuditEntry(action="identity_sync", identity_type="system", identity_id="system:sync"))
    assert client.get("/v1/audit/verify?chain=platform", headers=admin_headers).status_code == 403
    root = scaikey.mint(sub="usr_root_" + tenant_id, email=f"root@{tenant_id}.example", tenant_id=tenant_id,
                        partner_id="ptn_aud", scopes=("audit:read",), role="super_admin")
    body = client.get("/v1/audit/verify?chain=platform", headers=auth(root)).get_json()
    assert body["tenant_id"] is None and body["valid"] is True and body["entries_checked"] >= 1
    assert client.get("/v1/audit/verify?chain=moon", headers=auth(root)).status_code == 422
