"""The google (gcp) DNS provider plugin against a small fake of Google OAuth and Cloud DNS v1 (tests/fakes)."""
from __future__ import annotations

import pytest

from plugins.dns_gcp import CloudDnsProvider
from scaivault.services.dns_providers import DnsProviderError
from tests.fakes.gcp_dns import FakeCloudDns
from tests.fakes.dns_conformance import check_txt_values_side_by_side


@pytest.fixture(scope="module")
def cloud_dns():
    fake = FakeCloudDns("proj-1", {"acme-zone": "acme.example"})
    yield fake
    fake.stop()


def _provider(fake, **overrides):
    return CloudDnsProvider({"service_account_json": fake.service_account(), "api_url": fake.url, **overrides})


def test_txt_values_are_changed_as_whole_rrsets(cloud_dns):
    check_txt_values_side_by_side(_provider(cloud_dns), "acme.example", lambda fqdn: cloud_dns.txt("acme-zone", fqdn),
                                  lambda v: f'"{v}"')

def test_an_unknown_zone_or_a_foreign_key_fails_verification(cloud_dns):
    with pytest.raises(DnsProviderError, match="no managed zone for other.example"):
        _provider(cloud_dns).verify(["other.example"])
    other = FakeCloudDns("proj-1", {})
    try:
        with pytest.raises(DnsProviderError, match="refused the service account"):
            # a key the token endpoint does not know
            CloudDnsProvider({"service_account_json": {**other.service_account(), "token_uri": cloud_dns.url + "/token"},
                              "api_url": cloud_dns.url}).verify(["acme.example"])
    finally:
        other.stop()
