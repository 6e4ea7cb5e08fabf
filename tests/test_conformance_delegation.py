"""Issue 16 item 1: delegated administration through policies on reserved `sys/` paths.

Written from the documented flows: a Terraform service account holding `policies:write`
manages policies as code, a SIEM service account holding `audit:read` reads the audit log.
"""
from __future__ import annotations

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, grant, new_tenant

TERRAFORM_SCOPES = ("policies:read", "policies:write")


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


def test_terraform_service_account_creates_and_binds_a_policy(callers, admin, tenant):
    admin.put("/v1/secrets/app/db", json={"data": {"password": "s3cret"}})
    terraform = callers.service("terraform", tenant, scopes=TERRAFORM_SCOPES)
    before = terraform.post("/v1/policies", json={"name": "x", "rules": [{"path_pattern": "app/*",
                                                                            "permissions": ["read"]}]})
    assert before.status_code == 403 and error_code(before) == "access_denied"
    assert before.get_json()["error"]["details"]["system_path"] == "sys/policies"
    grant(admin, "sa:terraform", [{"path_pattern": "sys/policies", "permissions": ["read", "write", "delete"]},
                                  {"path_pattern": "app/**", "permissions": ["read"]}])
    created = terraform.post("/v1/policies", json={"name": "api-read", "rules": [
        {"path_pattern": "app/**", "permissions": ["read"]}]})
    assert created.status_code == 201, created.get_json()
    policy_id = created.get_json()["id"]
    bound = terraform.post(f"/v1/policies/{policy_id}/bindings",
                           json={"identity_type": "service_account", "identity_id": "sa:api"})
    assert bound.status_code == 201, bound.get_json()
    assert terraform.get(f"/v1/policies/{policy_id}").status_code == 200
    assert terraform.get("/v1/policies").status_code == 200
    api = callers.service("api", tenant, scopes=("secrets:read",))
    assert api.get("/v1/secrets/app/db").get_json()["data"] == {"password": "s3cret"}
    # it holds read on app/** only: it may not grant write there, nor anything on other paths or sys/
    for rules in ([{"path_pattern": "app/**", "permissions": ["write"]}],
                  [{"path_pattern": "**", "permissions": ["admin"]}],
                  [{"path_pattern": "sys/audit", "permissions": ["read"]}]):
        refused = terraform.post("/v1/policies", json={"name": "too-much", "rules": rules})
        assert refused.status_code == 403 and error_code(refused) == "access_denied", refused.get_json()
        assert refused.get_json()["error"]["details"]["not_held"]
    # nor bind a broader policy an admin wrote (to itself or anyone)
    broad = admin.post("/v1/policies", json={"name": "broad", "rules": [{"path_pattern": "**",
                                                                         "permissions": ["admin"]}]})
    refused = terraform.post(f"/v1/policies/{broad.get_json()['id']}/bindings",
                             json={"identity_type": "service_account", "identity_id": "sa:terraform"})
    assert refused.status_code == 403 and error_code(refused) == "access_denied"
    # deny rules only take away: always allowed
    deny = terraform.post("/v1/policies", json={"name": "deny-x", "rules": [
        {"path_pattern": "**", "permissions": ["admin"], "effect": "deny"}]})
    assert deny.status_code == 201
    assert terraform.delete(f"/v1/policies/{policy_id}?force=true").status_code == 200


def test_siem_service_account_reads_the_audit_log(callers, admin, tenant):
    admin.put("/v1/secrets/siem/probe", json={"data": {"k": "v"}})
    siem = callers.service("siem", tenant, scopes=("audit:read",))
    refused = siem.get("/v1/audit/logs")
    assert refused.status_code == 403 and error_code(refused) == "access_denied"
    grant(admin, "sa:siem", [{"path_pattern": "sys/audit", "permissions": ["read"]}])
    resp = siem.get("/v1/audit/logs")
    assert resp.status_code == 200, resp.get_json()
    assert any(e.get("secret_path") == "siem/probe" for e in resp.get_json()["logs"])
    assert siem.get("/v1/audit/summary").status_code == 200
    # read on sys/audit is not write on sys/audit/exports, nor policy management
    assert siem.get("/v1/policies").status_code == 403


def test_neither_delegate_can_touch_another_tenant(callers, admin, tenant):
    grant(admin, "sa:terraform", [{"path_pattern": "sys/**", "permissions": ["admin"]},
                                  {"path_pattern": "**", "permissions": ["admin"]}])
    terraform = callers.service("terraform", tenant, scopes=TERRAFORM_SCOPES + ("audit:read",))
    other = new_tenant()
    callers.admin(other).put("/v1/secrets/x/y", json={"data": {"k": "v"}})
    for resp in (terraform.get(f"/v1/t/{other}/policies"),
                 terraform.post(f"/v1/t/{other}/policies", json={"name": "n", "rules": [
                     {"path_pattern": "**", "permissions": ["read"]}]}),
                 terraform.get("/v1/audit/logs", headers={"X-Tenant-ID": other})):
        assert resp.status_code == 403 and error_code(resp) == "tenant_access_denied", resp.get_json()
    # at home, its delegated grants work
    assert terraform.get("/v1/audit/logs").status_code == 200


def test_a_tenant_admins_sys_grants_stay_in_its_tenant(callers, admin, tenant):
    """A tenant-scope policy acts in its tenant only: sys/ rights it grants do not reach a sibling tenant."""
    grant(admin, "sa:siem2", [{"path_pattern": "sys/**", "permissions": ["read"]}])
    sibling = new_tenant()
    callers.admin(sibling)   # the sibling exists, same partner
    siem = callers.service("siem2", tenant, scopes=("audit:read",))
    resp = siem.get("/v1/audit/logs", headers={"X-Tenant-ID": sibling})
    assert resp.status_code == 403 and error_code(resp) == "tenant_access_denied"
    # and only a partner admin may write a partner-scope policy (which would reach siblings)
    partner_policy = admin.post("/v1/policies", json={"name": "p", "scope": "partner", "rules": [
        {"path_pattern": "sys/audit", "permissions": ["read"]}]})
    assert partner_policy.status_code == 403


def test_admin_roles_keep_working(callers, admin):
    assert admin.get("/v1/policies").status_code == 200


@pytest.mark.parametrize("path", ["sys/policies/x", "sys/audit", "sys"])
def test_the_reserved_prefix_cannot_hold_secrets(admin, path):
    resp = admin.put(f"/v1/secrets/{path}", json={"data": {"k": "v"}})
    assert resp.status_code == 400 and error_code(resp) == "invalid_path"
    assert "reserved" in resp.get_json()["error"]["message"]
    assert resp.get_json()["error"]["details"]["reason"] == "reserved_prefix"


@pytest.mark.parametrize("url, scope, sys_path", [
    ("/v1/webhooks", "admin", "sys/webhooks"),
    ("/v1/rotation/policies", "admin", "sys/rotation"),
    ("/v1/secret-policies", "admin", "sys/secret-policies"),
    ("/v1/federation/backends", "federation:read", "sys/federation"),
])
def test_other_admin_families_delegate_on_their_sys_path(callers, admin, tenant, url, scope, sys_path):
    name = "ops-" + sys_path.split("/")[1]
    ops = callers.service(name, tenant, scopes=(scope,))
    refused = ops.get(url)
    assert refused.status_code == 403 and refused.get_json()["error"]["details"]["system_path"] == sys_path
    grant(admin, f"sa:{name}", [{"path_pattern": sys_path, "permissions": ["read"]}])
    assert ops.get(url).status_code == 200, ops.get(url).get_json()


def test_bindings_accept_dynamic_engine_identities(admin):
    """The dynamic-secrets tutorial binds a policy to `dynamic:<engine>`."""
    pid = admin.post("/v1/policies", json={"name": "pg-root", "rules": [
        {"path_pattern": "infra/pg/root", "permissions": ["read"]}]}).get_json()["id"]
    bound = admin.post(f"/v1/policies/{pid}/bindings", json={"identity_type": "dynamic_engine",
                                                              "identity_id": "dynamic:pg"})
    assert bound.status_code == 201 and bound.get_json()["identity_id"] == "dynamic:pg"
