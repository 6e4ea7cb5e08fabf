"""Issue 9, F2 / invariant 11: nothing is sealed under a guessed partner, and a tenant's partner
never changes under sealed data, whichever way ScaiKey's news arrives (webhook, sync, token)."""
from __future__ import annotations

import secrets

import pytest

from scaivault.config import DatabaseURL
from scaivault.crypto import SealContext
from scaivault.identity import sync
from scaivault.migrate import MigrationRunner
from tests.scaikey_standin import ScaiKeyStandin
from tests.secrets_support import ALL_SECRET_SCOPES

WEBHOOK = "/v1/identity/webhooks/scaikey"


@pytest.fixture(scope="module")
def scaikey_dir(tmp_path_factory):
    standin = ScaiKeyStandin().start()
    standin.add_client("sync-client", "s3cret", scopes=("admin:read",))
    secret = tmp_path_factory.mktemp("scaikey") / "secret"
    secret.write_text("s3cret\n")
    standin.secret_path = str(secret)
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def app(make_app, databases, scaikey_dir):
    """Its own database: tenant-limited syncs of this module's stand-in never touch the shared cache."""
    url = databases.create()
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    return make_app(DATABASE_URL=url, SCAIKEY_URL=scaikey_dir.url, SCAIKEY_CLIENT_ID="sync-client",
                    SCAIKEY_CLIENT_SECRET_FILE=scaikey_dir.secret_path,
                    IDENTITY_SYNC_WEBHOOK_SECRET=scaikey_dir.webhook_secret)


class Tenant:
    """One tenant whose partner ScaiKey announces in one of three ways."""

    def __init__(self, app, scaikey):
        self.app, self.scaikey = app, scaikey
        self.client = app.test_client()
        self.id = "tnt_" + secrets.token_hex(4)
        self.rt = app.extensions["scaivault"]

    def token(self, partner_id: str | None = None) -> dict:
        token = self.scaikey.mint(sub="usr_" + secrets.token_hex(4), tenant_id=self.id, partner_id=partner_id,
                                  scopes=ALL_SECRET_SCOPES, role="tenant_admin")
        return {"Authorization": f"Bearer {token}"}

    def announce(self, how: str, partner_id: str) -> None:
        if how == "webhook":
            body, headers = self.scaikey.build_webhook(
                "tenant.created", {"id": self.id, "partner_id": partner_id, "name": self.id, "status": "ACTIVE"},
                tenant_id=self.id, partner_id=partner_id)
            resp = self.client.post(WEBHOOK, data=body, headers=headers)
            assert resp.status_code == 200 and resp.get_json()["status"] == "applied", resp.get_json()
        elif how == "sync":
            directory = self.scaikey.directory
            directory.tenants[:] = [t for t in directory.tenants if t["id"] != self.id]
            if not any(p["id"] == partner_id for p in directory.partners):
                directory.add_partner(partner_id)
            directory.add_tenant(self.id, partner_id)
            run = sync.run_sync(self.rt, sync.new_run(self.rt, trigger="api", tenant_id=self.id))
            assert run["status"] == "succeeded", run["error"]
        else:   # a later token carrying the partner claim
            assert self.client.get("/v1/auth/whoami", headers=self.token(partner_id)).status_code == 200
        self.rt.authenticator.invalidate()

    def partner(self) -> str | None:
        return self.rt.db.scalar("SELECT partner_id FROM identity_tenants WHERE id = :id", id=self.id)


WAYS = ("webhook", "sync", "token")


@pytest.mark.parametrize("first", WAYS)
def test_every_version_stays_readable_whichever_way_the_partner_arrives_or_changes(app, scaikey_dir, first):
    tenant = Tenant(app, scaikey_dir)
    # seen first from a token without partner_id: nothing may be sealed under a guess
    unknown = tenant.client.put("/v1/secrets/app/db", json={"data": {"pw": "v0"}}, headers=tenant.token())
    assert unknown.status_code == 409, unknown.get_json()
    assert unknown.get_json()["error"]["code"] == "tenant_partner_unknown"
    assert tenant.rt.db.scalar("SELECT count(*) FROM tenant_keys WHERE tenant_id = :t", t=tenant.id) == 0

    partner = "ptn_" + secrets.token_hex(3)
    tenant.announce(first, partner)
    assert tenant.partner() == partner
    written = 0
    for value in ("v1", "v2"):
        resp = tenant.client.put("/v1/secrets/app/db", json={"data": {"pw": value}}, headers=tenant.token())
        assert resp.status_code in (200, 201), resp.get_json()
        written += 1

    # then ScaiKey (or a token) names other partners, each of the three ways
    for n, how in enumerate(WAYS):
        tenant.announce(how, f"ptn_other{n}{secrets.token_hex(2)}")
        assert tenant.partner() == partner, how
        resp = tenant.client.put("/v1/secrets/app/db", json={"data": {"pw": f"after-{how}"}}, headers=tenant.token())
        assert resp.status_code == 200, resp.get_json()
        written += 1
        for version in range(1, written + 1):
            got = tenant.client.get(f"/v1/secrets/app/db?version={version}", headers=tenant.token())
            assert got.status_code == 200, (how, version, got.get_json())


def test_a_refused_partner_change_is_kept_for_the_operator(app, scaikey_dir):
    tenant = Tenant(app, scaikey_dir)
    tenant.announce("webhook", "ptn_first")
    assert tenant.client.put("/v1/secrets/k", json={"data": {"a": "b"}}, headers=tenant.token()).status_code == 201
    tenant.announce("webhook", "ptn_second")
    attrs = tenant.rt.db.scalar("SELECT attributes FROM identity_tenants WHERE id = :id", id=tenant.id)
    assert tenant.partner() == "ptn_first" and attrs["scaikey_partner_id"] == "ptn_second"


def test_without_sealed_data_the_partner_may_still_change(app, scaikey_dir):
    tenant = Tenant(app, scaikey_dir)
    tenant.announce("webhook", "ptn_early")
    tenant.announce("sync", "ptn_corrected")
    assert tenant.partner() == "ptn_corrected"


def test_the_keyring_refuses_to_seal_for_a_tenant_without_a_partner(app):
    keyring = app.extensions["scaivault"].keyring
    with pytest.raises(Exception) as raised:
        keyring.seal(SealContext("", "tnt_nopartner", "secret", "x", 1), b"value")
    assert getattr(raised.value, "code", None) == "tenant_partner_unknown"
