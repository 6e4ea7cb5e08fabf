"""The azure DNS provider plugin against a small fake of Azure AD and the Azure DNS ARM API (tests/fakes)."""
from __future__ import annotations

import pytest

from plugins.dns_azure import AzureDnsProvider
from scaivault.services.dns_providers import DnsProviderError
from tests.fakes.azure_dns import FakeAzureDns
from tests.fakes.dns_conformance import check_txt_values_side_by_side


@pytest.fixture(scope="module")
def azure():
    fake = FakeAzureDns("tnt-1", "app-1", "s3cret", "sub-1", "rg-dns", ["acme.example"])
    yield fake
    fake.stop()


def _config(azure, **overrides):
    return {"tenant_id": "tnt-1", "client_id": "app-1", "client_secret": "s3cret", "subscription_id": "sub-1",
            "resource_group": "rg-dns", "authority_url": azure.url, "management_url": azure.url, **overrides}


def test_txt_values_are_kept_side_by_side_and_the_record_set_goes_with_the_last(azure):
    check_txt_values_side_by_side(AzureDnsProvider(_config(azure)), "acme.example",
                                  lambda fqdn: azure.txt("acme.example", fqdn.split(".")[0]))
    assert ("acme.example", "_acme-challenge") not in azure.records

def test_a_wrong_secret_or_zone_fails_verification(azure):
    with pytest.raises(DnsProviderError, match="refused the service principal"):
        AzureDnsProvider(_config(azure, client_secret="nope")).verify(["acme.example"])
    with pytest.raises(DnsProviderError, match="HTTP 404"):
        AzureDnsProvider(_config(azure)).verify(["other.example"])
    with pytest.raises(ValueError, match="client_secret is required"):
        AzureDnsProvider(_config(azure, client_secret=""))
