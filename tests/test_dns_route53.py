"""The route53 DNS provider plugin against moto's Route 53 server over real HTTP."""
from __future__ import annotations

import pytest

from plugins.dns_route53 import Route53Provider
from scaivault.services.dns_providers import DnsProviderError
from tests.acme_support import need_dns_plugin
from tests.fakes.dns_conformance import check_txt_values_side_by_side
from tests.pki_support import pki_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def zone(moto_url):
    import boto3

    client = boto3.client("route53", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_hosted_zone(Name="acme.example.", CallerReference="scaivault-test")
    return "acme.example"


def _config(moto_url):
    return {"access_key_id": "testing", "secret_access_key": "testing", "endpoint_url": moto_url,
            "region": "us-east-1", "insync_timeout": 10}


def _txt(provider, zone, fqdn):
    return provider._current(provider.zone_id(zone), fqdn)


def test_txt_values_are_added_side_by_side_and_removed_one_by_one(moto_url, zone):
    provider = Route53Provider(_config(moto_url))
    check_txt_values_side_by_side(provider, zone, lambda fqdn: _txt(provider, zone, fqdn), lambda v: f'"{v}"')

def test_an_unknown_zone_fails_verification(moto_url, zone):
    with pytest.raises(DnsProviderError, match="no hosted zone"):
        Route53Provider(_config(moto_url)).verify(["missing.example"])


@pytest.fixture
def admin(make_app, scaikey):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    return pki_admin(Callers(scaikey, app.test_client()), new_tenant())


def test_route53_provider_through_the_api_is_verified_and_never_echoes_credentials(admin, moto_url, zone):
    need_dns_plugin("route53")
    body = {"name": "r53", "provider_type": "route53", "managed_zones": [zone, f"*.{zone}"], "verify": True,
            "config": {"endpoint_url": moto_url, "region": "us-east-1"},
            "credentials": {"access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "wJalrXUtnFEMIEXAMPLESECRET"}}
    made = admin.post("/v1/dns/providers", json=body)
    assert made.status_code == 201, made.get_json()
    assert "wJalrXUtnFEMIEXAMPLESECRET" not in made.get_data(as_text=True)
    refused = admin.post("/v1/dns/providers", json={**body, "name": "r53-missing", "managed_zones": ["missing.example"]})
    assert refused.status_code == 400 and error_code(refused) == "invalid_config"
    assert "no hosted zone" in refused.get_json()["error"]["message"]
