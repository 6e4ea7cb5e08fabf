"""Access policies over HTTP: spec/20 section 5 and acceptance scenarios 5, 6, 7, 10, tenant isolation."""
from __future__ import annotations

import time

import pytest

from tests.secrets_support import (ADMIN_SCOPES, HIGH_RATE_LIMITS, Callers, error_code, grant, new_tenant)


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(callers, tenant):
    return callers.admin(tenant)


def audit_count(app, tenant):
    return app.extensions["scaivault"].db.scalar("SELECT count(*) FROM audit_log WHERE tenant_id = :t", t=tenant)


# ----------------------------------------------------------------- scenario 5
def test_least_privilege_service_reads_its_one_path_and_nothing_else(callers, admin, tenant):
    admin.put("/v1/secrets/reports/db/password", json={"data": {"p": "x"}})
    admin.put("/v1/secrets/reports/db/user", json={"data": {"u": "y"}})
    resp = admin.post("/v1/policies", json={"name": "reporting-read", "description": "reporting service",
                                            "rules": [{"path_pattern": "reports/db/password", "permissions": ["read"]}]})
    assert resp.status_code == 201
    policy = resp.get_json()
    assert policy["id"].startswith("pol_") and policy["is_active"] is True and policy["scope"] == "tenant"
    bind = admin.post(f"/v1/policies/{policy['id']}/bindings",
                      json={"identity_type": "service_account", "identity_id": "sa:reporting-service"})
    assert bind.status_code == 201 and bind.get_json()["identity_id"] == "sa:reporting-service"
    service = callers.service("reporting-service", tenant)
    assert service.get("/v1/secrets/reports/db/password").get_json()["data"] == {"p": "x"}
    sibling = service.get("/v1/secrets/reports/db/user")
    assert sibling.status_code == 403 and error_code(sibling) == "access_denied"
    write = service.put("/v1/secrets/reports/db/password", json={"data": {"p": "hacked"}})
    assert write.status_code == 403 and error_code(write) == "access_denied"


def test_default_deny_without_any_policy_even_with_every_scope(callers, admin, tenant):
    admin.put("/v1/secrets/dd/a", json={"data": {"k": "v"}})
    user = callers.user("nobody@acme.example", tenant)
    for resp in (user.get("/v1/secrets/dd/a"), user.put("/v1/secrets/dd/a", json={"data": {}}),
                 user.delete("/v1/secrets/dd/a"), user.get("/v1/secrets/dd/a:metadata")):
        assert resp.status_code == 403 and error_code(resp) == "access_denied"


def test_a_forbidden_path_gets_the_same_answer_whether_or_not_it_exists(callers, admin, tenant):
    admin.put("/v1/secrets/probe/real", json={"data": {"k": "v"}})
    user = callers.user("prober@acme.example", tenant)
    grant(admin, user.identity_id, [{"path_pattern": "other/**", "permissions": ["read"]}])
    real, fake = user.get("/v1/secrets/probe/real"), user.get("/v1/secrets/probe/fake")
    assert (real.status_code, error_code(real)) == (fake.status_code, error_code(fake)) == (403, "access_denied")


def test_scope_is_checked_before_policy_with_insufficient_scope(callers, admin, tenant):
    user = callers.user("scoped@acme.example", tenant, scopes=("secrets:read",))
    grant(admin, user.identity_id, [{"path_pattern": "**", "permissions": ["admin"]}])
    resp = user.put("/v1/secrets/sc/a", json={"data": {"k": "v"}})
    assert resp.status_code == 403 and error_code(resp) == "insufficient_scope"


def test_group_bindings_grant_to_members(callers, admin, tenant):
    admin.put("/v1/secrets/grp/a", json={"data": {"k": "v"}})
    grant(admin, "group:sre", [{"path_pattern": "grp/*", "permissions": ["read"]}])
    member = callers.user("sre1@acme.example", tenant, groups=["sre"])
    outsider = callers.user("dev1@acme.example", tenant, groups=["developers"])
    member_resp = member.get("/v1/secrets/grp/a")
    assert member_resp.status_code == 200, member_resp.get_json()
    assert outsider.get("/v1/secrets/grp/a").status_code == 403


def test_a_deny_rule_wins_over_an_allow_over_http(callers, admin, tenant):
    admin.put("/v1/secrets/deny/prod/db", json={"data": {"k": "v"}})
    admin.put("/v1/secrets/deny/dev/db", json={"data": {"k": "v"}})
    user = callers.user("denied@acme.example", tenant)
    grant(admin, user.identity_id, [{"path_pattern": "deny/**", "permissions": ["read"]},
                                    {"path_pattern": "deny/prod/**", "permissions": ["read"], "effect": "deny"}])
    assert user.get("/v1/secrets/deny/dev/db").status_code == 200
    resp = user.get("/v1/secrets/deny/prod/db")
    assert resp.status_code == 403 and error_code(resp) == "access_denied"
    assert resp.get_json()["error"]["details"]["policy_id"].startswith("pol_")


def test_an_expired_binding_grants_nothing(app, callers, admin, tenant):
    admin.put("/v1/secrets/lapse/a", json={"data": {"k": "v"}})
    user = callers.user("temp@acme.example", tenant)
    policy_id = grant(admin, user.identity_id, [{"path_pattern": "lapse/*", "permissions": ["read"]}],
                      expires_at="2099-01-01T00:00:00Z")
    assert user.get("/v1/secrets/lapse/a").status_code == 200
    app.extensions["scaivault"].db.execute("UPDATE policy_bindings SET expires_at = now() - interval '1 second' "
                                           "WHERE policy_id = :p", p=policy_id)
    app.extensions["scaivault"].policy_cache.invalidate(tenant, "ptn_test")
    assert user.get("/v1/secrets/lapse/a").status_code == 403


def test_an_inactive_policy_grants_nothing(callers, admin, tenant):
    admin.put("/v1/secrets/inactive/a", json={"data": {"k": "v"}})
    user = callers.user("inact@acme.example", tenant)
    policy_id = grant(admin, user.identity_id, [{"path_pattern": "inactive/*", "permissions": ["read"]}])
    assert user.get("/v1/secrets/inactive/a").status_code == 200
    assert admin.patch(f"/v1/policies/{policy_id}", json={"is_active": False}).status_code == 200
    assert user.get("/v1/secrets/inactive/a").status_code == 403
    assert policy_id not in [p["id"] for p in admin.get("/v1/policies").get_json()["policies"]]
    assert policy_id in [p["id"] for p in admin.get("/v1/policies?include_inactive=true").get_json()["policies"]]


# ----------------------------------------------------------------- scenario 6
def test_deleting_a_bound_policy_needs_force_and_removes_its_bindings(app, admin, tenant):
    policy_id = grant(admin, "user:someone@acme.example", [{"path_pattern": "x/*", "permissions": ["read"]}])
    resp = admin.delete(f"/v1/policies/{policy_id}")
    assert resp.status_code == 409 and error_code(resp) == "policy_in_use"
    forced = admin.delete(f"/v1/policies/{policy_id}?force=true")
    assert forced.status_code == 200 and forced.get_json()["removed_bindings"] == 1
    assert admin.get(f"/v1/policies/{policy_id}").status_code == 404
    left = app.extensions["scaivault"].db.scalar("SELECT count(*) FROM policy_bindings WHERE policy_id = :p", p=policy_id)
    assert left == 0


# ----------------------------------------------------------------- scenario 7
def test_dry_run_explains_allow_and_deny_and_writes_no_audit(app, admin, tenant):
    policy_id = grant(admin, "sa:reporting-service", [{"path_pattern": "reports/db/password", "permissions": ["read"]}])
    before = audit_count(app, tenant)
    allowed = admin.post("/v1/policies/test", json={"identity_id": "sa:reporting-service",
                                                    "path": "reports/db/password", "permission": "read"})
    assert allowed.status_code == 200, allowed.get_json()
    doc = allowed.get_json()
    assert doc["allowed"] is True
    assert doc["decision"]["matched_rule"]["policy_id"] == policy_id and doc["decision"]["matched_rule"]["rule_index"] == 0
    denied = admin.post("/v1/policies/test", json={"identity_id": "sa:reporting-service",
                                                   "path": "reports/db/password", "permission": "write"}).get_json()
    assert denied["allowed"] is False and denied["code"] == "access_denied"
    assert [p["policy_id"] for p in denied["evaluated_policies"]] == [policy_id]
    assert audit_count(app, tenant) == before


def test_dry_run_evaluates_conditions_from_the_given_context(admin):
    grant(admin, "user:ctx@acme.example", [{"path_pattern": "c/*", "permissions": ["read"],
                                           "conditions": {"ip_ranges": ["10.0.0.0/8"], "require_mfa": True}}])
    body = {"identity_id": "user:ctx@acme.example", "path": "c/a", "permission": "read"}
    outside = admin.post("/v1/policies/test", json={**body, "context": {"source_ip": "192.168.1.1"}}).get_json()
    assert outside["code"] == "ip_not_allowed" and outside["decision"]["failed_condition"] == "ip_ranges"
    no_mfa = admin.post("/v1/policies/test", json={**body, "context": {"source_ip": "10.1.1.1"}}).get_json()
    assert no_mfa["code"] == "mfa_required"
    ok = admin.post("/v1/policies/test", json={**body, "context": {"source_ip": "10.1.1.1", "mfa_verified": True}})
    assert ok.get_json()["allowed"] is True


def test_a_non_admin_may_dry_run_only_for_itself(callers, admin, tenant):
    user = callers.user("self@acme.example", tenant, scopes=("policies:read",))
    grant(admin, user.identity_id, [{"path_pattern": "mine/*", "permissions": ["read"]}])
    mine = user.post("/v1/policies/test", json={"path": "mine/a", "permission": "read"})
    assert mine.status_code == 200 and mine.get_json()["allowed"] is True
    other = user.post("/v1/policies/test", json={"identity_id": "user:else@acme.example", "path": "mine/a",
                                                 "permission": "read"})
    assert other.status_code == 403 and error_code(other) == "access_denied"


# ----------------------------------------------------------------- scenario 10
def test_ip_and_mfa_conditions_return_their_codes_with_failed_condition(scaikey, app, admin, tenant):
    admin.put("/v1/secrets/cond/a", json={"data": {"k": "v"}})
    grant(admin, "user:cond@acme.example", [{"path_pattern": "cond/*", "permissions": ["read"],
                                             "conditions": {"ip_ranges": ["10.0.0.0/8"], "require_mfa": True}}])
    callers = Callers(scaikey, app.test_client())
    plain = callers.user("cond@acme.example", tenant)
    outside = plain.get("/v1/secrets/cond/a")
    assert outside.status_code == 403 and error_code(outside) == "ip_not_allowed"
    assert outside.get_json()["error"]["details"]["failed_condition"] == "ip_ranges"
    plain.remote_addr = "10.2.3.4"
    no_mfa = plain.get("/v1/secrets/cond/a")
    assert no_mfa.status_code == 403 and error_code(no_mfa) == "mfa_required"
    with_mfa = callers.user("cond@acme.example", tenant, amr=["pwd", "mfa"], auth_time=int(time.time()))
    with_mfa.remote_addr = "10.2.3.4"
    assert with_mfa.get("/v1/secrets/cond/a").status_code == 200


def test_a_time_window_outside_now_is_time_window_violation(callers, admin, tenant):
    admin.put("/v1/secrets/tw/a", json={"data": {"k": "v"}})
    hour = time.gmtime().tm_hour
    start, end = f"{(hour + 2) % 24:02d}:00", f"{(hour + 3) % 24:02d}:00"
    user = callers.user("tw@acme.example", tenant)
    grant(admin, user.identity_id, [{"path_pattern": "tw/*", "permissions": ["read"],
                                     "conditions": {"time_window": {"start": start, "end": end, "timezone": "UTC"}}}])
    resp = user.get("/v1/secrets/tw/a")
    assert resp.status_code == 403 and error_code(resp) == "time_window_violation"


# ----------------------------------------------------------------- CRUD and validation
def test_policy_crud_round_trip_with_audit(app, admin, tenant):
    created = admin.post("/v1/policies", json={"name": "crud", "rules": [{"path_pattern": "a/*", "permissions": ["read"]}]})
    pid = created.get_json()["id"]
    got = admin.get(f"/v1/policies/{pid}").get_json()
    assert got["name"] == "crud" and got["bindings"] == [] and got["rules"][0]["path_pattern"] == "a/*"
    put = admin.put(f"/v1/policies/{pid}", json={"name": "crud2", "rules": [{"path_pattern": "b/**", "permissions": ["list"]}]})
    assert put.status_code == 200 and put.get_json()["rules"] == [{"path_pattern": "b/**", "permissions": ["list"]}]
    patched = admin.patch(f"/v1/policies/{pid}", json={"description": "changed"}).get_json()
    assert patched["description"] == "changed" and patched["name"] == "crud2"
    binding = admin.post(f"/v1/policies/{pid}/bindings", json={"identity_type": "group", "identity_id": "group:ops"}).get_json()
    assert admin.get(f"/v1/policies/{pid}/bindings").get_json()["bindings"][0]["id"] == binding["id"]
    assert admin.delete(f"/v1/policies/{pid}/bindings/{binding['id']}").status_code == 200
    gone = admin.delete(f"/v1/policies/{pid}/bindings/{binding['id']}")
    assert gone.status_code == 404 and error_code(gone) == "binding_not_found"
    assert admin.delete(f"/v1/policies/{pid}").status_code == 200
    actions = [(r["action"], r["success"]) for r in app.extensions["scaivault"].db.query(
        "SELECT action, success FROM audit_log WHERE tenant_id = :t AND action LIKE 'policy_%' ORDER BY ts", t=tenant)]
    # reading a policy and its bindings is audited too (issue 9); so is the refused second unbind (issue 18)
    assert actions == [("policy_create", True), ("policy_read", True), ("policy_update", True), ("policy_update", True),
                       ("policy_bind", True), ("policy_read", True), ("policy_unbind", True), ("policy_unbind", False),
                       ("policy_delete", True)]


def test_policy_list_is_paginated(admin):
    for i in range(5):
        admin.post("/v1/policies", json={"name": f"page-{i}", "rules": [{"path_pattern": "a", "permissions": ["read"]}]})
    first = admin.get("/v1/policies?limit=2").get_json()
    assert len(first["policies"]) == 2 and first["has_more"] and first["cursor"]
    second = admin.get(f"/v1/policies?limit=2&cursor={first['cursor']}").get_json()
    assert {p["id"] for p in second["policies"]}.isdisjoint({p["id"] for p in first["policies"]})
    assert first["policies"][0]["rule_count"] == 1 and "binding_count" in first["policies"][0]
    assert error_code(admin.get("/v1/policies?cursor=nonsense")) == "invalid_cursor"


@pytest.mark.parametrize("rules,code,status", [
    ([{"path_pattern": "a/**b", "permissions": ["read"]}], "invalid_glob", 400),
    ([{"path_pattern": "a/*", "permissions": ["fly"]}], "invalid_policy", 400),
    ([], "invalid_policy", 400),
    ([{"path_pattern": "a/*", "permissions": ["read"], "conditions": {"ip_ranges": ["nope"]}}], "invalid_policy", 400),
    ([{"permissions": ["read"]}], "validation_error", 422),
])
def test_bad_policies_are_rejected_with_precise_codes(admin, rules, code, status):
    resp = admin.post("/v1/policies", json={"name": "bad", "rules": rules})
    assert resp.status_code == status and error_code(resp) == code


def test_bad_bindings_and_unknown_policies(admin):
    pid = admin.post("/v1/policies", json={"name": "bind-check", "rules": [{"path_pattern": "a", "permissions": ["read"]}]}).get_json()["id"]
    bad = admin.post(f"/v1/policies/{pid}/bindings", json={"identity_type": "group", "identity_id": "user:x@y"})
    assert bad.status_code == 400 and error_code(bad) == "invalid_policy"
    past = admin.post(f"/v1/policies/{pid}/bindings", json={"identity_type": "user", "identity_id": "user:x@y",
                                                            "expires_at": "2001-01-01T00:00:00Z"})
    assert error_code(past) == "invalid_policy"
    missing = admin.get("/v1/policies/pol_doesnotexist")
    assert missing.status_code == 404 and error_code(missing) == "policy_not_found"
    dup = admin.post("/v1/policies", json={"name": "bind-check", "rules": [{"path_pattern": "a", "permissions": ["read"]}]})
    assert dup.status_code == 409


def test_managing_policies_needs_an_admin_role(callers, tenant):
    user = callers.user("plain@acme.example", tenant, scopes=ADMIN_SCOPES)
    resp = user.post("/v1/policies", json={"name": "self-grant", "rules": [{"path_pattern": "**", "permissions": ["admin"]}]})
    assert resp.status_code == 403 and error_code(resp) == "access_denied"
    assert user.get("/v1/policies").status_code == 403


def test_partner_scope_policies_apply_in_every_tenant_and_need_a_partner_admin(callers, admin, tenant):
    other = new_tenant()
    partner_admin = callers.admin(tenant, role="partner_admin")
    refused = admin.post("/v1/policies", json={"name": "org", "scope": "partner",
                                               "rules": [{"path_pattern": "org/**", "permissions": ["read"]}]})
    assert refused.status_code == 403
    created = partner_admin.post("/v1/policies", json={"name": "org-read", "scope": "partner",
                                                       "rules": [{"path_pattern": "org/**", "permissions": ["read"]}]})
    assert created.status_code == 201, created.get_json()
    pid = created.get_json()["id"]
    partner_admin.post(f"/v1/policies/{pid}/bindings", json={"identity_type": "group", "identity_id": "group:org-readers"})
    other_admin = callers.admin(other)
    other_admin.put("/v1/secrets/org/shared", json={"data": {"k": "v"}})
    reader = callers.user("orgreader@acme.example", other, groups=["org-readers"])
    assert reader.get("/v1/secrets/org/shared").status_code == 200


# ----------------------------------------------------------------- tenant isolation
def test_tenant_a_can_neither_read_list_nor_probe_tenant_b(callers, tenant):
    tenant_b = new_tenant()
    admin_b = callers.admin(tenant_b)
    admin_b.put("/v1/secrets/iso/secret", json={"data": {"k": "tenant-b-only"}})
    admin_a = callers.admin(tenant)
    assert admin_a.get("/v1/secrets/iso/secret").status_code == 404          # a different, empty namespace
    assert admin_a.get("/v1/secrets?prefix=iso/").get_json()["secrets"] == []
    crossing = [admin_a.get(f"/v1/t/{tenant_b}/secrets/iso/secret"),
                admin_a.get("/v1/secrets/iso/secret", headers={"X-Tenant-ID": tenant_b}),
                admin_a.get(f"/v1/t/{tenant_b}/secrets?prefix=iso/"),
                admin_a.get(f"/v1/t/{tenant_b}/secrets/iso/nonexistent")]
    for resp in crossing:
        assert resp.status_code == 403 and error_code(resp) == "tenant_access_denied"
        assert b"tenant-b-only" not in resp.data
    assert admin_a.put("/v1/secrets/iso/secret", json={"data": {"k": "a"}}).get_json()["version"] == 1
    assert admin_b.get("/v1/secrets/iso/secret").get_json()["data"] == {"k": "tenant-b-only"}


def test_a_partner_admin_acts_in_its_tenants_by_path_prefix(callers, tenant):
    tenant_b = new_tenant()
    callers.admin(tenant_b).put("/v1/secrets/pa/x", json={"data": {"k": "b"}})
    partner_admin = callers.admin(tenant, role="partner_admin")
    assert partner_admin.get(f"/v1/t/{tenant_b}/secrets/pa/x").get_json()["data"] == {"k": "b"}
    foreign = callers.admin(new_tenant(), role="partner_admin", partner="ptn_other")
    assert foreign.get(f"/v1/t/{tenant_b}/secrets/pa/x").status_code == 403


# ----------------------------------------------------------------- partner secrets
def test_partner_secrets_are_readable_in_every_tenant_and_written_by_partner_admins(callers, admin, tenant):
    partner_admin = callers.admin(tenant, role="partner_admin")
    resp = partner_admin.put("/v1/partner/secrets/shared/webhook-signing-key", json={"data": {"key": "k1"}})
    assert resp.status_code == 201, resp.get_json()
    tenant_admin_elsewhere = callers.admin(new_tenant())
    assert tenant_admin_elsewhere.get("/v1/partner/secrets/shared/webhook-signing-key").get_json()["data"] == {"key": "k1"}
    refused = tenant_admin_elsewhere.put("/v1/partner/secrets/shared/webhook-signing-key", json={"data": {"key": "evil"}})
    assert refused.status_code == 403 and error_code(refused) == "access_denied"
    assert admin.get("/v1/secrets/shared/webhook-signing-key").status_code == 404     # not a tenant secret
    plain = callers.user("plainuser@acme.example", new_tenant())      # issue 16: shared with the partner's tenants
    assert plain.get("/v1/partner/secrets/shared/webhook-signing-key").get_json()["data"] == {"key": "k1"}
    other_partner = callers.admin(new_tenant(), partner="ptn_other")
    assert other_partner.get("/v1/partner/secrets/shared/webhook-signing-key").status_code == 404


def test_partner_scope_policies_grant_reads_of_partner_secrets(callers, tenant):
    partner_admin = callers.admin(tenant, role="partner_admin")
    partner_admin.put("/v1/partner/secrets/shared/ca", json={"data": {"pem": "x"}})
    pid = partner_admin.post("/v1/policies", json={"name": "shared-read", "scope": "partner",
                                                   "rules": [{"path_pattern": "shared/*", "permissions": ["read"]}]}).get_json()["id"]
    partner_admin.post(f"/v1/policies/{pid}/bindings", json={"identity_type": "group", "identity_id": "group:all"})
    member = callers.user("member@acme.example", new_tenant(), groups=["all"])
    assert member.get("/v1/partner/secrets/shared/ca").get_json()["data"] == {"pem": "x"}


def test_partner_secrets_have_their_own_listing_versions_and_delete(callers, tenant):
    partner = "ptn_" + new_tenant()[4:]
    partner_admin = callers.admin(tenant, role="partner_admin", partner=partner)
    for i in range(3):
        partner_admin.put(f"/v1/partner/secrets/shared/cfg-{i}", json={"data": {"i": i}})
    partner_admin.put("/v1/partner/secrets/shared/cfg-0", json={"data": {"i": 10}})
    listed = partner_admin.get("/v1/partner/secrets?prefix=shared/").get_json()
    assert [s["path"] for s in listed["secrets"]] == ["shared/cfg-0", "shared/cfg-1", "shared/cfg-2"]
    assert partner_admin.get("/v1/secrets?prefix=shared/").get_json()["secrets"] == []
    versions = partner_admin.get("/v1/partner/secrets/shared/cfg-0:versions").get_json()
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    reader = callers.admin(new_tenant(), partner=partner)
    assert reader.delete("/v1/partner/secrets/shared/cfg-1").status_code == 403
    assert partner_admin.delete("/v1/partner/secrets/shared/cfg-1").status_code == 200
    assert reader.get("/v1/partner/secrets/shared/cfg-1").status_code == 404
