"""Issue 9, F3 / invariant 10: a token never outlives or outranks what minted it; roles are derived at use."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from scaivault.identity import store

SCOPES = ("secrets:read", "identity:read")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _mint_pat(client, auth, token, **body):
    resp = client.post("/v1/auth/tokens", json={"name": "t", "scopes": ["secrets:read"], **body}, headers=auth(token))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_a_token_minted_by_a_one_day_token_dies_with_it(client, scaikey, auth):
    user = scaikey.mint(sub="usr_life_" + secrets.token_hex(3), tenant_id="tnt_life", partner_id="ptn_life",
                        scopes=SCOPES)
    parent = _mint_pat(client, auth, user, expires_in="1d")
    child = _mint_pat(client, auth, parent["token"], expires_in="366d")
    assert _when(child["expires_at"]) <= _when(parent["expires_at"])
    assert _when(child["expires_at"]) < datetime.now(timezone.utc) + timedelta(days=1, minutes=1)
    grandchild = _mint_pat(client, auth, child["token"])
    assert client.get("/v1/auth/whoami", headers=auth(grandchild["token"])).status_code == 200
    # revoking the parent takes everything it minted along
    assert client.delete(f"/v1/auth/tokens/{parent['id']}", headers=auth(user)).status_code == 200
    for token in (child["token"], grandchild["token"]):
        resp = client.get("/v1/auth/whoami", headers=auth(token))
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"
    listed = {t["id"]: t["status"] for t in client.get("/v1/auth/tokens", headers=auth(user)).get_json()["tokens"]}
    assert listed[child["id"]] == listed[grandchild["id"]] == "revoked"


def test_a_five_minute_service_token_cannot_mint_a_year_long_token(client, scaikey, auth):
    service = scaikey.mint_service("cli_life_" + secrets.token_hex(3), scopes=SCOPES, tenant_id="tnt_life",
                                   partner_id="ptn_life", expires_in=300)
    resp = client.post("/v1/auth/tokens", json={"name": "forever", "scopes": ["secrets:read"], "expires_in": "366d"},
                       headers=auth(service))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"


def test_a_role_claim_is_not_snapshotted_into_a_personal_token(app, client, scaikey, auth):
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_tenant(s, {"id": "tnt_life", "partner_id": "ptn_life"})
        store.upsert_tenant(s, {"id": "tnt_life2", "partner_id": "ptn_life"})
    admin = scaikey.mint(sub="usr_life_pa" + secrets.token_hex(3), tenant_id="tnt_life", partner_id="ptn_life",
                         role="partner_admin", scopes=SCOPES)
    assert client.get("/v1/auth/whoami", headers=auth(admin)).get_json()["roles"] == ["partner_admin"]
    pat = _mint_pat(client, auth, admin)
    # ScaiKey demotes the user: its next session has no role claim, and the PAT never had the role
    assert client.get("/v1/auth/whoami", headers=auth(pat["token"])).get_json()["roles"] == []
    other_tenant = {"X-Tenant-ID": "tnt_life2"}
    assert client.get("/v1/secrets/a/b", headers={**auth(admin), **other_tenant}).status_code == 404
    resp = client.get("/v1/secrets/a/b", headers={**auth(pat["token"]), **other_tenant})
    assert resp.status_code == 403 and resp.get_json()["error"]["details"]["reason"] == "cross_tenant"


def test_storing_a_role_held_only_by_claim_is_self_elevation(app, client, scaikey, auth):
    sub = "usr_life_self" + secrets.token_hex(3)
    with app.extensions["scaivault"].db.transaction() as s:
        store.upsert_tenant(s, {"id": "tnt_life", "partner_id": "ptn_life"})
        store.upsert_user(s, {"id": sub, "tenant_id": "tnt_life", "email": f"{sub}@life.example"})
    claim_only = scaikey.mint(sub=sub, tenant_id="tnt_life", partner_id="ptn_life", role="partner_admin",
                              scopes=("identity:admin", "identity:read"))
    resp = client.put(f"/v1/identity/users/{sub}/roles", json={"roles": ["partner_admin"]}, headers=auth(claim_only))
    assert resp.status_code == 403 and resp.get_json()["error"]["details"]["roles"] == ["partner_admin"]
    assert client.get(f"/v1/identity/users/{sub}/roles", headers=auth(claim_only)).get_json()["roles"] == []
