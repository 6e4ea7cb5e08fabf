"""dns-01 end to end: pebble validating against a local bind9 updated over RFC 2136 with TSIG, a wildcard
included; DNS providers at /v1/dns/providers with sealed credentials."""
from __future__ import annotations

import pytest
from cryptography import x509

from tests.acme_support import Bind9, Pebble, free_port, need_dns_plugin, wait_order
from tests.pki_support import openssl_verify, pki_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(make_app, tmp_path_factory):
    need_dns_plugin("rfc2136")
    bind = Bind9(tmp_path_factory.mktemp("bind"))
    pebble = Pebble(tmp_path_factory.mktemp("pebble-dns"), http_port=free_port(), dns_server=f"127.0.0.1:{bind.port}")
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS, ACME_CA_BUNDLE=str(pebble.cert))
    yield {"app": app, "pebble": pebble, "bind": bind}
    pebble.stop()
    bind.stop()


@pytest.fixture
def admin(stack, scaikey):
    return pki_admin(Callers(scaikey, stack["app"].test_client()), new_tenant())


def _provider(admin, bind, **overrides) -> dict:
    body = {"name": "bind-local", "provider_type": "rfc2136",
            "config": {"server": "127.0.0.1", "port": bind.port},
            "credentials": {"tsig_key_name": bind.key_name, "tsig_secret": bind.secret, "tsig_algorithm": "hmac-sha256"},
            "managed_zones": [bind.zone, f"*.{bind.zone}"], "verify": True, **overrides}
    return admin.post("/v1/dns/providers", json=body)


def test_wildcard_and_apex_through_rfc2136_then_the_txt_records_are_removed(stack, admin, tmp_path):
    bind, pebble = stack["bind"], stack["pebble"]
    made = _provider(admin, bind)
    assert made.status_code == 201, made.get_json()
    provider = made.get_json()
    assert provider["id"].startswith("dnsp_") and provider["is_active"]
    assert bind.secret not in made.get_data(as_text=True) and "credentials" not in provider
    account = admin.post("/v1/pki/acme/accounts", json={"name": "pebble-dns", "provider": "custom",
                                                        "environment": "staging", "email": "ops@example.test",
                                                        "directory_url": pebble.directory_url}).get_json()
    resp = admin.post("/v1/pki/acme/orders", json={"account_id": account["id"],
                                                   "domains": [f"*.{bind.zone}", bind.zone], "challenge": "dns-01",
                                                   "dns_provider_id": provider["id"], "secret_path": "tls/wildcard"})
    assert resp.status_code == 202, resp.get_json()
    done = wait_order(admin, resp.get_json()["id"], timeout=120)
    assert done["status"] == "valid", (done, pebble.log_tail())
    data = admin.get("/v1/secrets/tls/wildcard").get_json()["data"]
    leaf = x509.load_pem_x509_certificate(data["cert_pem"].encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(names) == sorted([f"*.{bind.zone}", bind.zone])
    result = openssl_verify(tmp_path, data["cert_pem"], [data["chain_pem"]], pebble.root_pem())
    assert result.returncode == 0, result.stdout + result.stderr
    assert bind.txt(f"_acme-challenge.{bind.zone}") == set()
    listed = admin.get("/v1/dns/providers").get_json()["providers"]
    assert [p["id"] for p in listed] == [provider["id"]] and bind.secret not in str(listed)


def test_a_wrong_tsig_secret_is_refused_at_creation(stack, admin):
    bind = stack["bind"]
    import base64

    resp = _provider(admin, bind, name="bad-key",
                     credentials={"tsig_key_name": bind.key_name, "tsig_secret": base64.b64encode(b"x" * 32).decode()})
    assert resp.status_code == 400 and error_code(resp) == "invalid_config", resp.get_json()
    assert "x" * 8 not in resp.get_data(as_text=True)


def test_credentials_are_sealed_at_rest(stack, admin):
    bind = stack["bind"]
    provider = _provider(admin, bind, name="sealed").get_json()
    raw = bytes(stack["app"].extensions["scaivault"].db.scalar(
        "SELECT sealed_credentials FROM dns_providers WHERE id = :id", id=provider["id"]))
    assert raw[:2] == b"SV" and bind.secret.encode() not in raw


def test_dns01_order_outside_the_managed_zones_is_refused(stack, admin):
    bind = stack["bind"]
    provider = _provider(admin, bind, name="zones").get_json()
    account = admin.post("/v1/pki/acme/accounts", json={"name": "acct-z", "provider": "custom",
                                                        "directory_url": stack["pebble"].directory_url}).get_json()
    resp = admin.post("/v1/pki/acme/orders", json={"account_id": account["id"], "domains": ["www.other.test"],
                                                   "challenge": "dns-01", "dns_provider_id": provider["id"],
                                                   "secret_path": "tls/other"})
    assert resp.status_code == 422 and "managed zones" in resp.get_json()["error"]["details"]["fields"]["domains"]
    assert error_code(admin.delete("/v1/dns/providers/dnsp_nope")) == "dns_provider_not_found"
    assert admin.delete(f"/v1/dns/providers/{provider['id']}").status_code == 204


def test_txt_that_never_reaches_the_authoritative_servers_fails_the_order_and_is_removed(stack, admin):
    from tests.acme_support import free_tcp_udp_port

    bind, pebble = stack["bind"], stack["pebble"]
    # the update goes to bind, but propagation is checked against a server that never answers
    provider = _provider(admin, bind, name="silent", config={"server": "127.0.0.1", "port": bind.port,
                                                             "nameservers": [f"127.0.0.1:{free_tcp_udp_port()}"],
                                                             "propagation_timeout": 2}).get_json()
    account = admin.post("/v1/pki/acme/accounts", json={"name": "acct-silent", "provider": "custom",
                                                        "directory_url": pebble.directory_url}).get_json()
    resp = admin.post("/v1/pki/acme/orders", json={"account_id": account["id"], "domains": [f"silent.{bind.zone}"],
                                                   "challenge": "dns-01", "dns_provider_id": provider["id"],
                                                   "secret_path": "tls/silent"})
    done = wait_order(admin, resp.get_json()["id"], timeout=60)
    assert done["status"] == "invalid" and "did not reach the authoritative servers" in done["reason"], done
    assert bind.txt(f"_acme-challenge.silent.{bind.zone}") == set()
