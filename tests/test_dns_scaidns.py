"""The scaidns DNS provider plugin against a small fake of the ScaiDNS API (tests/fakes)."""
from __future__ import annotations

import pytest

from plugins.dns_scaidns import ScaiDnsProvider
from scaivault.services.dns_providers import DnsProviderError
from tests.fakes.scaidns import FakeScaiDns


@pytest.fixture(scope="module")
def scaidns():
    fake = FakeScaiDns("sdk_test_key", ["acme.example"])
    yield fake
    fake.stop()


def test_txt_records_are_created_quoted_beside_each_other_and_deleted(scaidns):
    provider = ScaiDnsProvider({"api_key": "sdk_test_key", "base_url": scaidns.url})
    provider.verify(["acme.example"])
    fqdn = "_acme-challenge.acme.example"
    provider.add_txt("acme.example", fqdn, "v-wildcard", 60)
    provider.add_txt("acme.example", fqdn, "v-apex", 60)
    provider.add_txt("acme.example", fqdn, "v-apex", 60)          # idempotent
    assert scaidns.txt(fqdn) == ['"v-apex"', '"v-wildcard"']
    provider.remove_txt("acme.example", fqdn, "v-wildcard")
    assert scaidns.txt(fqdn) == ['"v-apex"']
    provider.remove_txt("acme.example", fqdn, "v-apex")
    assert scaidns.txt(fqdn) == []


def test_a_bad_key_or_an_unknown_zone_fails_verification(scaidns):
    with pytest.raises(DnsProviderError, match="HTTP 401"):
        ScaiDnsProvider({"api_key": "sdk_wrong", "base_url": scaidns.url}).verify(["acme.example"])
    with pytest.raises(DnsProviderError, match="no ScaiDNS zone named other.example"):
        ScaiDnsProvider({"api_key": "sdk_test_key", "base_url": scaidns.url}).verify(["other.example"])
