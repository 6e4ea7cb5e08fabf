"""The cloudflare DNS provider plugin against a small fake of Cloudflare's API v4 (tests/fakes)."""
from __future__ import annotations

import pytest

from plugins.dns_cloudflare import CloudflareProvider
from scaivault.services.dns_providers import DnsProviderError
from tests.fakes.cloudflare_dns import FakeCloudflare
from tests.fakes.dns_conformance import check_txt_values_side_by_side


@pytest.fixture(scope="module")
def cloudflare():
    fake = FakeCloudflare("cf-token-123", ["acme.example"])
    yield fake
    fake.stop()


def test_txt_values_are_added_beside_each_other_and_removed(cloudflare):
    provider = CloudflareProvider({"api_token": "cf-token-123", "api_url": cloudflare.url})
    check_txt_values_side_by_side(provider, "acme.example", cloudflare.txt)

def test_a_bad_token_and_an_unknown_zone_fail_verification(cloudflare):
    with pytest.raises(DnsProviderError, match="Invalid access token"):
        CloudflareProvider({"api_token": "wrong", "api_url": cloudflare.url}).verify(["acme.example"])
    with pytest.raises(DnsProviderError, match="no zone named other.example"):
        CloudflareProvider({"api_token": "cf-token-123", "api_url": cloudflare.url}).verify(["other.example"])


def test_unresolvable_name_servers_leave_propagation_to_configured_nameservers(cloudflare):
    provider = CloudflareProvider({"api_token": "cf-token-123", "api_url": cloudflare.url})
    assert provider.authoritative_servers("acme.example") == []
