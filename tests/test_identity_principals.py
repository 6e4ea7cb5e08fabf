"""Issue 9, F1/F4/F8: identities are keyed on ScaiKey's immutable sub and tenant, never on a name.

Each test replays an attack of the security review against the ScaiKey stand-in: partners
ptn_a (tenants tnt_a1, tnt_a2) and ptn_b (tnt_b1), suffixed per test so tests share a database.
"""
from __future__ import annotations

import secrets
import shutil

import pytest

from scaivault.config import DatabaseURL
from scaivault.identity import store
from scaivault.migrate import MigrationRunner, default_directory
from tests.secrets_support import ALL_SECRET_SCOPES, HIGH_RATE_LIMITS

PAT_SCOPES = ("secrets:read",)


@pytest.fixture
def world(app):
    """ptn_a (tnt_a1, tnt_a2) and ptn_b (tnt_b1), unique to this test."""
    tag = secrets.token_hex(3)
    w = {"tag": tag, "ptn_a": f"ptn_a{tag}", "ptn_b": f"ptn_b{tag}",
         "tnt_a1": f"tnt_a1{tag}", "tnt_a2": f"tnt_a2{tag}", "tnt_b1": f"tnt_b1{tag}"}
    with app.extensions["scaivault"].db.transaction() as s:
        for partner in ("ptn_a", "ptn_b"):
            store.upsert_partner(s, {"id": w[partner]})
        for tenant, partner in (("tnt_a1", "ptn_a"), ("tnt_a2", "ptn_a"), ("tnt_b1", "ptn_b")):
            store.upsert_tenant(s, {"id": w[tenant], "partner_id": w[partner]})
    return w


def _user(app, w, key: str, tenant: str, email: str) -> str:
    """A user cached by a sync of `tenant` (its own admin chose the email)."""
    sub = f"usr_{key}{w['tag']}"
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_user(s, {"id": sub, "tenant_id": w[tenant], "email": email})
    return sub


def _token(scaikey, w, sub, tenant, scopes=ALL_SECRET_SCOPES, **claims):
    partner = "ptn_b" if tenant.startswith("tnt_b") else "ptn_a"
    return scaikey.mint(sub=sub, tenant_id=w[tenant], partner_id=w[partner], scopes=scopes, **claims)


def _whoami(client, auth, token) -> dict:
    resp = client.get("/v1/auth/whoami", headers=auth(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _spend_bucket(client, headers) -> bool:
    """Call until refused (the `auth` bucket holds 5); True once a 429 came."""
    return any(client.get("/v1/auth/whoami", headers=headers).status_code == 429 for _ in range(8))


# ----------------------------------------------------------------------------- F1
def test_a_same_email_user_of_another_partner_does_not_inherit_the_bootstrap_super_admin(make_app, scaikey, auth):
    tag = secrets.token_hex(3)
    email = f"root{tag}@platform.example"
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS, BOOTSTRAP_SUPER_ADMIN=f"user:{email}")
    client = app.test_client()
    w = {"tag": tag, "tnt_a1": f"tnt_a1{tag}", "tnt_b1": f"tnt_b1{tag}", "ptn_a": f"ptn_a{tag}", "ptn_b": f"ptn_b{tag}"}
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_tenant(s, {"id": w["tnt_a1"], "partner_id": w["ptn_a"]})
        store.upsert_tenant(s, {"id": w["tnt_b1"], "partner_id": w["ptn_b"]})
    root = _user(app, w, "root", "tnt_a1", email)
    root_token = _token(scaikey, w, root, "tnt_a1", scopes=ALL_SECRET_SCOPES)
    assert _whoami(client, auth, root_token)["roles"] == ["super_admin"]
    assert client.put("/v1/secrets/db/root", json={"data": {"pw": "a1-only"}}, headers=auth(root_token)).status_code == 201

    # tnt_b1's own admin creates a user with the same email (other casing), which the sync caches
    mallory = _user(app, w, "mallory", "tnt_b1", email.replace("root", "Root").replace("platform", "Platform"))
    mallory_token = _token(scaikey, w, mallory, "tnt_b1")
    me = _whoami(client, auth, mallory_token)
    assert me["identity_id"] == f"user:{email}" and me["roles"] == []
    resp = client.get("/v1/secrets/db/root", headers={**auth(mallory_token), "X-Tenant-ID": w["tnt_a1"]})
    assert resp.status_code == 403

    # a token of another partner carrying only the email claim (a sub the cache has never seen)
    claim_only = scaikey.mint(sub=f"usr_ghost{tag}", email=email, tenant_id=w["tnt_b1"], partner_id=w["ptn_b"],
                              scopes=ALL_SECRET_SCOPES)
    assert _whoami(client, auth, claim_only)["roles"] == []
    resp = client.get(f"/v1/t/{w['tnt_a1']}/secrets/db/root", headers=auth(claim_only))
    assert resp.status_code == 403


def test_the_bootstrap_admin_binds_to_the_first_matching_sign_in_once(make_app, scaikey, auth):
    tag = secrets.token_hex(3)
    email = f"boot{tag}@platform.example"
    app = make_app(BOOTSTRAP_SUPER_ADMIN=f"user:{email}")
    client = app.test_client()
    first = scaikey.mint(sub=f"usr_first{tag}", email=email, tenant_id=f"tnt_x{tag}")
    second = scaikey.mint(sub=f"usr_second{tag}", email=email, tenant_id=f"tnt_y{tag}")
    assert _whoami(client, auth, first)["roles"] == ["super_admin"]
    assert _whoami(client, auth, second)["roles"] == []
    # a fresh instance (restart) neither promotes the second nor forgets the first
    again = make_app(BOOTSTRAP_SUPER_ADMIN=f"user:{email}").test_client()
    assert _whoami(again, auth, second)["roles"] == []
    assert _whoami(again, auth, first)["roles"] == ["super_admin"]


def test_an_email_claim_does_not_override_the_cached_user(app, scaikey, auth, world):
    client = app.test_client()
    alice = _user(app, world, "alice", "tnt_a1", f"alice{world['tag']}@a.example")
    bob = _user(app, world, "bob", "tnt_a1", f"bob{world['tag']}@a.example")
    superadmin = scaikey.mint(sub=f"usr_sa{world['tag']}", tenant_id=world["tnt_a1"], role="super_admin",
                              scopes=("identity:admin", "identity:read"))
    resp = client.put(f"/v1/identity/users/{alice}/roles", json={"roles": ["tenant_admin"]}, headers=auth(superadmin))
    assert resp.status_code == 200, resp.get_json()
    assert _whoami(client, auth, _token(scaikey, world, alice, "tnt_a1"))["roles"] == ["tenant_admin"]
    # bob's token says he is alice: the cached row for his sub wins (spec/15 2.4)
    forged = _token(scaikey, world, bob, "tnt_a1", email=f"alice{world['tag']}@a.example")
    me = _whoami(client, auth, forged)
    assert me["identity_id"] == f"user:bob{world['tag']}@a.example" and me["roles"] == []


def test_same_email_users_of_two_tenants_have_their_own_tokens_and_buckets(make_app, scaikey, auth, world):
    app = make_app(RATE_LIMITS="auth: {rate: 5, window: 1h}")
    client = app.test_client()
    email = f"same{world['tag']}@shared.example"
    one = _token(scaikey, world, _user(app, world, "one", "tnt_a1", email), "tnt_a1", scopes=PAT_SCOPES)
    two = _token(scaikey, world, _user(app, world, "two", "tnt_b1", email), "tnt_b1", scopes=PAT_SCOPES)
    made = client.post("/v1/auth/tokens", json={"name": "mine", "scopes": list(PAT_SCOPES)}, headers=auth(one))
    assert made.status_code == 201
    assert client.get("/v1/auth/tokens", headers=auth(two)).get_json()["total"] == 0
    assert client.delete(f"/v1/auth/tokens/{made.get_json()['id']}", headers=auth(two)).status_code == 404
    # `one` spends the rest of its bucket; `two` still has a full one
    assert _spend_bucket(client, auth(one))
    assert client.get("/v1/auth/whoami", headers=auth(two)).status_code == 200


# ----------------------------------------------------------------------------- F4
def test_a_same_named_app_of_another_partner_cannot_see_or_revoke_tokens_or_share_a_bucket(make_app, scaikey, auth,
                                                                                             world):
    app = make_app(RATE_LIMITS="auth: {rate: 5, window: 1h}")
    client = app.test_client()
    tag = world["tag"]
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_application(s, {"id": f"app_cia{tag}", "client_id": f"app_cia{tag}", "name": "ci",
                                     "scope": "TENANT", "tenant_id": world["tnt_a1"]})
        store.upsert_application(s, {"id": f"app_cib{tag}", "client_id": f"app_cib{tag}", "name": "ci",
                                     "scope": "TENANT", "tenant_id": world["tnt_b1"]})
    ci_a = scaikey.mint_service(f"app_cia{tag}", scopes=PAT_SCOPES, tenant_id=world["tnt_a1"], partner_id=world["ptn_a"])
    ci_b = scaikey.mint_service(f"app_cib{tag}", scopes=PAT_SCOPES, tenant_id=world["tnt_b1"], partner_id=world["ptn_b"])
    assert _whoami(client, auth, ci_a)["identity_id"] == _whoami(client, auth, ci_b)["identity_id"] == "sa:ci"
    # service accounts no longer mint PATs (F3); one made before the fix belongs to ci of tnt_a1 only
    assert client.post("/v1/auth/tokens", json={"name": "deploy", "scopes": list(PAT_SCOPES)},
                       headers=auth(ci_a)).status_code == 403
    app.extensions["scaivault"].db.execute(
        """INSERT INTO personal_tokens (id, token_hash, name, identity_id, identity_type, subject, tenant_id, scopes,
                                        expires_at)
           VALUES (:id, :h, 'legacy', 'sa:ci', 'service_account', :sub, :t, '{secrets:read}', now() + interval '1 day')""",
        id=f"pat_legacy{tag}", h=secrets.token_bytes(32), sub=f"app_cia{tag}", t=world["tnt_a1"])
    assert [t["id"] for t in client.get("/v1/auth/tokens", headers=auth(ci_a)).get_json()["tokens"]] == [f"pat_legacy{tag}"]
    assert client.get("/v1/auth/tokens", headers=auth(ci_b)).get_json()["total"] == 0
    assert client.delete(f"/v1/auth/tokens/pat_legacy{tag}", headers=auth(ci_b)).status_code == 404
    assert _spend_bucket(client, auth(ci_a))
    assert client.get("/v1/auth/whoami", headers=auth(ci_b)).status_code == 200


def test_an_app_name_from_another_tenant_does_not_name_a_token(app, scaikey, auth, world):
    tag = world["tag"]
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_application(s, {"id": f"app_x{tag}", "client_id": f"app_x{tag}", "name": "payments",
                                     "scope": "TENANT", "tenant_id": world["tnt_a1"]})
    # a token for that client_id but claiming tnt_b1 does not become sa:payments of tnt_a1
    token = scaikey.mint_service(f"app_x{tag}", tenant_id=world["tnt_b1"], partner_id=world["ptn_b"])
    assert _whoami(app.test_client(), auth, token)["identity_id"] == f"sa:app_x{tag}"


# ----------------------------------------------------------------------------- F8
def test_a_users_tokens_survive_the_first_sync_renaming_the_identity(app, scaikey, auth, world):
    client = app.test_client()
    sub = f"usr_early{world['tag']}"
    token = _token(scaikey, world, sub, "tnt_a1", scopes=PAT_SCOPES)
    assert _whoami(client, auth, token)["identity_id"] == f"user:{sub}"
    made = client.post("/v1/auth/tokens", json={"name": "before-sync", "scopes": list(PAT_SCOPES)}, headers=auth(token))
    assert made.status_code == 201
    pat = made.get_json()["token"]
    _user(app, world, "early", "tnt_a1", f"early{world['tag']}@a.example")   # the first sync
    app.extensions["scaivault"].authenticator.invalidate()
    assert _whoami(client, auth, token)["identity_id"] == f"user:early{world['tag']}@a.example"
    assert _whoami(client, auth, pat)["identity_id"] == f"user:early{world['tag']}@a.example"
    listed = client.get("/v1/auth/tokens", headers=auth(token)).get_json()
    assert [t["id"] for t in listed["tokens"]] == [made.get_json()["id"]]
    assert client.delete(f"/v1/auth/tokens/{made.get_json()['id']}", headers=auth(token)).status_code == 200
    assert client.get("/v1/auth/whoami", headers=auth(pat)).status_code == 401


def test_the_audit_actor_is_the_sub_and_tenant(app, scaikey, auth, world):
    client = app.test_client()
    sub = _user(app, world, "audited", "tnt_a1", f"audited{world['tag']}@a.example")
    token = _token(scaikey, world, sub, "tnt_a1", scopes=PAT_SCOPES)
    client.post("/v1/auth/tokens", json={"name": "x", "scopes": list(PAT_SCOPES)}, headers=auth(token))
    row = app.extensions["scaivault"].db.one(
        "SELECT identity_id, extra_data FROM audit_log WHERE action = 'token_create' AND extra_data->>'actor' = :a",
        a=f"{world['tnt_a1']}/{sub}")
    assert row is not None and row["identity_id"] == f"user:audited{world['tag']}@a.example"


# ----------------------------------------------------------------------------- migration
def test_the_migration_moves_name_keyed_grants_to_the_one_user_they_can_belong_to(fresh_database_url, tmp_path):
    url = DatabaseURL.parse("DATABASE_URL", fresh_database_url)
    before = tmp_path / "before"
    before.mkdir()
    for f in default_directory().glob("*.sql"):
        if int(f.name.split("_")[0]) < 50:
            shutil.copy(f, before / f.name)
    MigrationRunner(url, before).apply()
    import pg8000.native

    conn = pg8000.native.Connection(user=url.user, host=url.host, port=url.port, database=url.database)
    try:
        conn.run("""INSERT INTO identity_tenants (id, partner_id) VALUES ('tnt_a1', 'ptn_a'), ('tnt_b1', 'ptn_b')""")
        conn.run("""INSERT INTO identity_users (id, tenant_id, email) VALUES ('usr_alice', 'tnt_a1', 'Alice@a.example'),
                    ('usr_root_a', 'tnt_a1', 'root@p.example'), ('usr_root_b', 'tnt_b1', 'root@p.example'),
                    ('usr_early', 'tnt_a1', 'early@a.example')""")
        conn.run("""INSERT INTO identity_role_assignments (identity_id, role, partner_id, tenant_id) VALUES
                    ('user:alice@a.example', 'tenant_admin', 'ptn_a', 'tnt_a1'),
                    ('user:root@p.example', 'super_admin', NULL, NULL),
                    ('user:usr_early', 'partner_admin', 'ptn_a', NULL),
                    ('user:nobody@x.example', 'tenant_admin', 'ptn_a', 'tnt_a1')""")
    finally:
        conn.close()
    MigrationRunner(url, default_directory()).apply()
    conn = pg8000.native.Connection(user=url.user, host=url.host, port=url.port, database=url.database)
    try:
        rows = conn.run("SELECT principal, role FROM identity_role_assignments ORDER BY principal, role")
        unresolved = conn.run("SELECT value FROM system_state WHERE key = 'legacy_role_assignments_unresolved'")[0][0]
    finally:
        conn.close()
    # the ambiguous super_admin (two users share the email) and the unknown user grant nothing any more
    assert rows == [["tnt_a1/usr_alice", "tenant_admin"], ["tnt_a1/usr_early", "partner_admin"]]
    assert sorted(r["identity_id"] for r in unresolved) == ["user:nobody@x.example", "user:root@p.example"]


def test_a_binding_name_means_the_identity_of_the_policys_own_tenant(app, scaikey, auth, world):
    from tests.secrets_support import Callers, grant

    tag = world["tag"]
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_application(s, {"id": f"app_t{tag}", "client_id": f"app_t{tag}", "name": "ci",
                                     "scope": "TENANT", "tenant_id": world["tnt_a1"]})
        store.upsert_application(s, {"id": f"app_p{tag}", "client_id": f"app_p{tag}", "name": "ci",
                                     "scope": "PARTNER", "partner_id": world["ptn_a"]})
    admin = Callers(scaikey, app.test_client()).admin(world["tnt_a1"], partner=world["ptn_a"])
    assert admin.put("/v1/secrets/ci/key", json={"data": {"k": "v"}}).status_code == 201
    grant(admin, "sa:ci", [{"path_pattern": "ci/**", "permissions": ["read"]}])
    client = app.test_client()
    tenant_app = scaikey.mint_service(f"app_t{tag}", scopes=ALL_SECRET_SCOPES, tenant_id=world["tnt_a1"],
                                      partner_id=world["ptn_a"])
    assert client.get("/v1/secrets/ci/key", headers=auth(tenant_app)).status_code == 200
    # the partner's own app is also called `ci`, and may enter tnt_a1: the tenant's binding is not for it
    partner_app = scaikey.mint_service(f"app_p{tag}", scopes=ALL_SECRET_SCOPES, app_scope="PARTNER",
                                       partner_id=world["ptn_a"])
    assert _whoami(client, auth, partner_app)["identity_id"] == "sa:ci"
    resp = client.get("/v1/secrets/ci/key", headers={**auth(partner_app), "X-Tenant-ID": world["tnt_a1"]})
    assert resp.status_code == 403


def test_the_audit_log_filters_by_actor_telling_same_named_identities_apart(app, scaikey, auth, world):
    client = app.test_client()
    email = f"dup{world['tag']}@shared.example"
    one = _user(app, world, "dup1", "tnt_a1", email)
    two = _user(app, world, "dup2", "tnt_a1", email.upper())   # a second account of the same tenant, same email
    for sub in (one, two):
        client.get("/v1/secrets/none/here", headers=auth(_token(scaikey, world, sub, "tnt_a1")))
    admin = scaikey.mint(sub=f"usr_aud{world['tag']}", tenant_id=world["tnt_a1"], partner_id=world["ptn_a"],
                         role="tenant_admin", scopes=("audit:read",))
    body = client.get("/v1/audit/logs", query_string={"actor": f"{world['tnt_a1']}/{one}", "action": "read"},
                      headers=auth(admin)).get_json()
    assert len(body["logs"]) == 1 and body["logs"][0]["identity_id"] == f"user:{email}"
