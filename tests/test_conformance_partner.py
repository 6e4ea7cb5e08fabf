"""Issue 16 item 3: partner secrets are shared with every tenant of the partner (spec/20 section 2)."""
from __future__ import annotations

import secrets as pyrandom

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


@pytest.fixture
def partner():
    return "ptn_" + pyrandom.token_hex(5)


@pytest.fixture
def partner_admin(callers, partner):
    caller = callers.admin(new_tenant(), role="partner_admin", partner=partner)
    for name in ("webhook-signing-key", "smtp", "internal/only"):
        assert caller.put(f"/v1/partner/secrets/shared/{name}", json={"data": {"v": name}}).status_code == 201
    return caller


def test_an_ordinary_identity_of_a_sibling_tenant_reads_partner_secrets(callers, partner, partner_admin):
    reader = callers.user("dev@sibling.example", new_tenant(), partner=partner, scopes=("secrets:read",))
    resp = reader.get("/v1/partner/secrets/shared/webhook-signing-key")
    assert resp.status_code == 200 and resp.get_json()["data"] == {"v": "webhook-signing-key"}
    # still read-only for it
    writer = callers.user("dev2@sibling.example", new_tenant(), partner=partner)
    refused = writer.put("/v1/partner/secrets/shared/smtp", json={"data": {"v": "evil"}})
    assert refused.status_code == 403 and error_code(refused) == "access_denied"


def test_the_scope_is_still_needed(callers, partner, partner_admin):
    no_scope = callers.user("ops@sibling.example", new_tenant(), partner=partner, scopes=("secrets:list",))
    resp = no_scope.get("/v1/partner/secrets/shared/smtp")
    assert resp.status_code == 403 and error_code(resp) == "insufficient_scope"


def test_another_partners_identity_reads_nothing(callers, partner_admin):
    outsider = callers.user("x@elsewhere.example", new_tenant(), partner="ptn_" + pyrandom.token_hex(5))
    assert outsider.get("/v1/partner/secrets/shared/smtp").status_code in (403, 404)


def test_partner_scope_deny_rules_narrow_the_default(callers, partner, partner_admin):
    pid = partner_admin.post("/v1/policies", json={"name": "no-internal", "scope": "partner", "rules": [
        {"path_pattern": "shared/internal/**", "permissions": ["read", "list"], "effect": "deny"}]}).get_json()["id"]
    assert partner_admin.post(f"/v1/policies/{pid}/bindings", json={
        "identity_type": "group", "identity_id": "group:contractors"}).status_code == 201
    contractor = callers.user("c@sibling.example", new_tenant(), partner=partner, groups=["contractors"])
    denied = contractor.get("/v1/partner/secrets/shared/internal/only")
    assert denied.status_code == 403 and error_code(denied) == "access_denied"
    assert contractor.get("/v1/partner/secrets/shared/smtp").status_code == 200
    listed = [s["path"] for s in contractor.get("/v1/partner/secrets?prefix=shared/").get_json()["secrets"]]
    assert "shared/smtp" in listed and "shared/internal/only" not in listed


def test_partner_secrets_join_a_tenant_listing_only_when_asked(callers, partner, partner_admin):
    tenant = new_tenant()
    user = callers.user("lister@sibling.example", tenant, partner=partner)
    tenant_admin = callers.admin(tenant, partner=partner)
    tenant_admin.put("/v1/secrets/shared/own", json={"data": {"v": 1}})
    from tests.secrets_support import grant
    grant(tenant_admin, user.identity_id, [{"path_pattern": "shared/**", "permissions": ["list"]}])
    plain = user.get("/v1/secrets?prefix=shared/").get_json()
    assert [s["path"] for s in plain["secrets"]] == ["shared/own"] and "partner_secrets" not in plain
    both = user.get("/v1/secrets?prefix=shared/&include_partner=true").get_json()
    assert [s["path"] for s in both["secrets"]] == ["shared/own"]
    assert {s["path"] for s in both["partner_secrets"]} == {"shared/webhook-signing-key", "shared/smtp",
                                                            "shared/internal/only"}
    assert both["partner_has_more"] is False
    page = user.get("/v1/secrets?prefix=shared/&include_partner=true&limit=1").get_json()
    assert len(page["partner_secrets"]) == 1 and page["partner_has_more"] is True
    nxt = user.get(f"/v1/secrets?prefix=shared/&include_partner=true&limit=1&partner_cursor={page['partner_cursor']}")
    assert nxt.get_json()["partner_secrets"][0]["path"] != page["partner_secrets"][0]["path"]
