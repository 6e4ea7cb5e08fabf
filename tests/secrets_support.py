"""Helpers for the secrets and policies tests: callers with minted tokens, raised rate limits."""
from __future__ import annotations

import secrets as pyrandom

from scaivault.ratelimit import CATEGORIES

ALL_SECRET_SCOPES = ("secrets:read", "secrets:write", "secrets:delete", "secrets:list", "secrets:rotate")
ADMIN_SCOPES = ALL_SECRET_SCOPES + ("policies:read", "policies:write")
HIGH_RATE_LIMITS = "\n".join(f"{c}: {{rate: 100000, window: 1m}}" for c in CATEGORIES)


def new_tenant() -> str:
    return "tnt_" + pyrandom.token_hex(5)


class Caller:
    """One identity with a bearer token, speaking to a Flask test client."""

    def __init__(self, client, token: str, identity_id: str, remote_addr: str = "127.0.0.1"):
        self.client = client
        self.token = token
        self.identity_id = identity_id
        self.remote_addr = remote_addr

    def call(self, method: str, url: str, **kw):
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.client.open(url, method=method, headers=headers,
                                environ_base={"REMOTE_ADDR": self.remote_addr}, **kw)

    def get(self, url, **kw):
        return self.call("GET", url, **kw)

    def put(self, url, **kw):
        return self.call("PUT", url, **kw)

    def post(self, url, **kw):
        return self.call("POST", url, **kw)

    def patch(self, url, **kw):
        return self.call("PATCH", url, **kw)

    def delete(self, url, **kw):
        return self.call("DELETE", url, **kw)


class Callers:
    """Mints tokens for users and service accounts of a tenant."""

    def __init__(self, scaikey, client):
        self.scaikey = scaikey
        self.client = client

    def user(self, email: str, tenant: str, *, scopes=ALL_SECRET_SCOPES, role: str | None = None,
             partner: str = "ptn_test", groups=(), client=None, **claims) -> Caller:
        token = self.scaikey.mint(sub="usr_" + pyrandom.token_hex(6), email=email, tenant_id=tenant,
                                  partner_id=partner, scopes=scopes, role=role, groups=groups, **claims)
        return Caller(client or self.client, token, f"user:{email}")

    def admin(self, tenant: str, *, partner: str = "ptn_test", role: str = "tenant_admin", client=None) -> Caller:
        return self.user(f"admin-{pyrandom.token_hex(3)}@{tenant}.example", tenant, scopes=ADMIN_SCOPES, role=role,
                         partner=partner, client=client)

    def service(self, name: str, tenant: str, *, scopes=ALL_SECRET_SCOPES, client=None) -> Caller:
        token = self.scaikey.mint_service(name, scopes=scopes, tenant_id=tenant, partner_id="ptn_test")
        return Caller(client or self.client, token, f"sa:{name}")


def error_code(resp) -> str:
    body = resp.get_json()
    assert body and "error" in body, (resp.status_code, resp.data[:300])
    return body["error"]["code"]


def grant(admin: Caller, identity_id: str, rules: list[dict], *, identity_type: str | None = None,
          name: str | None = None, **binding) -> str:
    """Create a policy with `rules` and bind it to `identity_id`; returns the policy id."""
    resp = admin.post("/v1/policies", json={"name": name or "p-" + pyrandom.token_hex(4), "rules": rules})
    assert resp.status_code == 201, resp.get_json()
    policy_id = resp.get_json()["id"]
    kind = identity_type or {"user": "user", "sa": "service_account", "group": "group"}[identity_id.split(":")[0]]
    resp = admin.post(f"/v1/policies/{policy_id}/bindings",
                      json={"identity_type": kind, "identity_id": identity_id, **binding})
    assert resp.status_code == 201, resp.get_json()
    return policy_id
