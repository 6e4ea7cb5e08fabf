"""ACME client end to end against Debian's pebble: accounts, http-01 orders, restart survival."""
from __future__ import annotations

import secrets as pyrandom

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.acme_support import ChallTestSrv, Pebble, ServedApp, free_port, wait_order
from tests.pki_support import openssl_verify, pki_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(make_app, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pebble")
    dns = ChallTestSrv(workdir)
    port = free_port()
    pebble = Pebble(workdir, http_port=port, dns_server=f"127.0.0.1:{dns.dns_port}")
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS, ACME_CA_BUNDLE=str(pebble.cert))
    served = ServedApp(app, port)
    yield {"app": app, "pebble": pebble, "served": served}
    served.stop()
    pebble.stop()
    dns.stop()


@pytest.fixture
def admin(stack, scaikey):
    return pki_admin(Callers(scaikey, stack["app"].test_client()), new_tenant())


def _account(admin, pebble) -> dict:
    resp = admin.post("/v1/pki/acme/accounts", json={"name": "pebble-" + pyrandom.token_hex(3), "provider": "custom",
                                                     "environment": "staging", "email": "ops@example.com",
                                                     "directory_url": pebble.directory_url})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_http01_order_lands_certificate_key_and_chain_in_the_secret(stack, admin, tmp_path):
    pebble = stack["pebble"]
    account = _account(admin, pebble)
    assert account["account_url"] and "key" not in str(account).lower().replace("eab_kid", "")
    domain = f"www-{pyrandom.token_hex(3)}.example.com"
    resp = admin.post("/v1/pki/acme/orders", json={"account_id": account["id"], "domains": [domain],
                                                   "challenge": "http-01", "secret_path": "tls/www"})
    assert resp.status_code == 202, resp.get_json()
    order = resp.get_json()
    assert order["status"] == "pending" and order["id"].startswith("ord_")
    done = wait_order(admin, order["id"])
    assert done["status"] == "valid", (done, pebble.log_tail())
    secret = admin.get("/v1/secrets/tls/www").get_json()
    assert secret["secret_type"] == "certificate"
    data = secret["data"]
    leaf = x509.load_pem_x509_certificate(data["cert_pem"].encode())
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == [domain]
    key = serialization.load_pem_private_key(data["key_pem"].encode(), None)
    assert key.public_key() == leaf.public_key()
    assert done["serial_number"] == format(leaf.serial_number, "x")
    result = openssl_verify(tmp_path, data["cert_pem"], [data["chain_pem"]], pebble.root_pem())
    assert result.returncode == 0, result.stdout + result.stderr
    # the token is gone once the order is done
    app = stack["app"]
    assert app.extensions["scaivault"].db.scalar("SELECT count(*) FROM acme_http_challenges WHERE order_id = :o",
                                                 o=order["id"]) == 0


def test_a_name_the_ca_refuses_ends_invalid_with_the_reason(stack, admin):
    account = _account(admin, stack["pebble"])
    resp = admin.post("/v1/pki/acme/orders", json={"account_id": account["id"], "domains": ["bad_name.example.com"],
                                                   "challenge": "http-01", "secret_path": "tls/refused"})
    assert resp.status_code == 202
    done = wait_order(admin, resp.get_json()["id"])
    assert done["status"] == "invalid" and done["reason"], done
    assert "rejectedIdentifier" in done["reason"] or "malformed" in done["reason"], done["reason"]
    assert admin.get("/v1/secrets/tls/refused").status_code == 404


def _order_row(rt, account: dict, domain: str, path: str) -> dict:
    from scaivault.services.pki import system_audit
    from scaivault.services.secrets import SecretOwner

    row = rt.db.one("SELECT tenant_id, partner_id FROM acme_accounts WHERE id = :id", id=account["id"])
    return rt.acme.create_order(SecretOwner(row["partner_id"], row["tenant_id"]),
                                {"account_id": account["id"], "domains": [domain], "challenge": "http-01",
                                 "secret_path": path}, "user:test", system_audit(row), start=False)


def test_an_order_left_by_a_stopped_instance_is_finished_by_the_resume_job(stack, admin):
    from scaivault.jobs import pki as pki_jobs

    account = _account(admin, stack["pebble"])
    rt = stack["app"].extensions["scaivault"]
    view = _order_row(rt, account, f"resume-{pyrandom.token_hex(3)}.example.com", "tls/resumed")
    # the instance that claimed it stopped: runner set, heartbeat long stale, never finished
    rt.db.execute("""UPDATE acme_orders SET status = 'processing', runner = 'gone:1:x',
                            heartbeat_at = now() - interval '10 minutes' WHERE id = :id""", id=view["id"])
    assert pki_jobs.acme_orders(rt)["resumed"] >= 1
    rt.acme.wait(view["id"], 90)
    done = wait_order(admin, view["id"])
    assert done["status"] == "valid", (done, stack["pebble"].log_tail())
    assert done["attempts"] == 1
    assert admin.get("/v1/secrets/tls/resumed").status_code == 200


def test_a_live_runner_is_not_taken_over(stack, admin):
    account = _account(admin, stack["pebble"])
    rt = stack["app"].extensions["scaivault"]
    view = _order_row(rt, account, "live.example.com", "tls/live")
    rt.db.execute("UPDATE acme_orders SET runner = 'other:1:x', heartbeat_at = now() WHERE id = :id", id=view["id"])
    assert rt.acme.run(view["id"]) is None
    rt.acme.resume_stalled()
    row = rt.db.one("SELECT runner, status, attempts FROM acme_orders WHERE id = :id", id=view["id"])
    assert row == {"runner": "other:1:x", "status": "pending", "attempts": 0}
    rt.db.execute("UPDATE acme_orders SET status = 'invalid', runner = NULL WHERE id = :id", id=view["id"])


def test_http01_answer_is_public_and_unknown_tokens_404(stack):
    client = stack["app"].test_client()
    resp = client.get("/.well-known/acme-challenge/unknown-token")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


def test_account_and_order_validation(stack, admin):
    for body in ({"name": "x", "provider": "custom", "environment": "staging"},
                 {"name": "x", "provider": "zerossl", "environment": "production"},
                 {"name": "x", "provider": "nope"},
                 {"name": "x", "provider": "zerossl", "environment": "staging", "eab_kid": "k", "eab_hmac_key": "h"}):
        resp = admin.post("/v1/pki/acme/accounts", json=body)
        assert resp.status_code == 422, (body, resp.get_json())
    account = _account(admin, stack["pebble"])
    for body, field in (({"domains": ["*.example.com"], "challenge": "http-01"}, "domains"),
                        ({"domains": ["a.example.com"], "challenge": "tls-alpn-01"}, "challenge"),
                        ({"domains": ["a.example.com"], "challenge": "dns-01"}, "dns_provider_id")):
        resp = admin.post("/v1/pki/acme/orders", json={"account_id": account["id"], "secret_path": "tls/x", **body})
        assert resp.status_code == 422 and field in resp.get_json()["error"]["details"]["fields"], resp.get_json()
    assert error_code(admin.post("/v1/pki/acme/orders", json={"account_id": "acct_nope", "domains": ["a.b"],
                                                              "secret_path": "tls/x"})) == "acme_account_not_found"
    assert error_code(admin.get("/v1/pki/acme/orders/ord_nope")) == "acme_order_not_found"
    listed = admin.get("/v1/pki/acme/accounts").get_json()["accounts"]
    assert account["id"] in [a["id"] for a in listed]
    assert not any("PRIVATE" in str(a) for a in listed)


def test_acme_account_key_is_sealed(stack, admin):
    account = _account(admin, stack["pebble"])
    raw = bytes(stack["app"].extensions["scaivault"].db.scalar("SELECT sealed_key FROM acme_accounts WHERE id = :id",
                                                               id=account["id"]))
    assert raw[:2] == b"SV" and b"PRIVATE KEY" not in raw


def test_auto_renew_orders_again_at_two_thirds_and_writes_a_new_version(stack, admin):
    account = _account(admin, stack["pebble"])
    rt = stack["app"].extensions["scaivault"]
    domain = f"renew-{pyrandom.token_hex(3)}.example.com"
    first = admin.post("/v1/pki/acme/orders", json={"account_id": account["id"], "domains": [domain],
                                                    "secret_path": "tls/renewing", "auto_renew": True}).get_json()
    assert wait_order(admin, first["id"])["status"] == "valid"
    assert rt.acme.renew_due() == 0                     # fresh certificate: nothing due
    rt.db.execute("""UPDATE acme_orders SET not_before = now() - interval '61 days',
                            not_after = now() + interval '29 days' WHERE id = :id""", id=first["id"])
    assert rt.acme.renew_due() == 1
    assert rt.acme.renew_due() == 0                     # one renewal per certificate
    renewed_id = admin.get(f"/v1/pki/acme/orders/{first['id']}").get_json()["renewed_by"]
    renewed = wait_order(admin, renewed_id)
    assert renewed["status"] == "valid" and renewed["renewed_from"] == first["id"] and renewed["auto_renew"]
    secret = admin.get("/v1/secrets/tls/renewing").get_json()
    assert secret["version"] == 2 and secret["metadata"]["acme_order_id"] == renewed_id
    events = [r["extra_data"].get("event") for r in rt.db.query(
        "SELECT extra_data FROM audit_log WHERE action = 'acme_order' AND secret_path = 'tls/renewing' "
        "AND tenant_id = (SELECT tenant_id FROM acme_orders WHERE id = :id)", id=first["id"])]
    assert "certificate.issued" in events and "certificate.renewed" in events


def test_two_instances_starting_one_order_run_it_once(stack, admin, make_app):
    account = _account(admin, stack["pebble"])
    first = stack["app"].extensions["scaivault"]
    second = make_app(RATE_LIMITS=HIGH_RATE_LIMITS, ACME_CA_BUNDLE=str(stack["pebble"].cert)).extensions["scaivault"]
    assert first.acme.runner_id != second.acme.runner_id
    view = _order_row(first, account, f"twice-{pyrandom.token_hex(3)}.example.com", "tls/twice")
    first.acme.start(view["id"])
    second.acme.start(view["id"])
    first.acme.wait(view["id"], 90)
    second.acme.wait(view["id"], 90)
    done = wait_order(admin, view["id"])
    assert done["status"] == "valid", (done, stack["pebble"].log_tail())
    assert done["attempts"] == 1                        # one claim: the other instance found it taken
    assert admin.get("/v1/secrets/tls/twice").get_json()["version"] == 1
