"""The scaidns DNS provider plugin against a small fake of the ScaiDNS API (tests/fakes)."""
from __future__ import annotations

import pytest

from plugins.dns_scaidns import ScaiDnsProvider
from scaivault.services.dns_providers import DnsProviderError
from tests.fakes.scaidns import FakeScaiDns
from tests.fakes.dns_conformance import check_txt_values_side_by_side


@pytest.fixture(scope="module")
def scaidns():
    fake = FakeScaiDns("sdk_test_key", ["acme.example"])
    yield fake
    fake.stop()


def test_txt_records_are_created_quoted_beside_each_other_and_deleted(scaidns):
    provider = ScaiDnsProvider({"api_key": "sdk_test_key", "base_url": scaidns.url})
    check_txt_values_side_by_side(provider, "acme.example", scaidns.txt, lambda v: f'"{v}"')

def test_a_bad_key_or_an_unknown_zone_fails_verification(scaidns):
    with pytest.raises(DnsProviderError, match="HTTP 401"):
        ScaiDnsProvider({"api_key": "sdk_wrong", "base_url": scaidns.url}).verify(["acme.example"])
    with pytest.raises(DnsProviderError, match="no ScaiDNS zone named other.example"):
        ScaiDnsProvider({"api_key": "sdk_test_key", "base_url": scaidns.url}).verify(["other.example"])
