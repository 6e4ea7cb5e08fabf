"""What every DNS provider plugin must do for dns-01, checked the same way against each fake or server."""
from __future__ import annotations

from typing import Callable


def check_txt_values_side_by_side(provider, zone: str, read: Callable[[str], list[str]],
                                  shown: Callable[[str], str] = lambda v: v) -> None:
    """Two values at one name coexist (wildcard and apex share `_acme-challenge.<zone>`), adding twice
    adds once, removing takes only the value named, removing a missing value is no error.

    `read(fqdn)` lists the values the backend holds; `shown(value)` is how it stores one (quoted or not).
    """
    fqdn = f"_acme-challenge.{zone}"
    provider.verify([zone])
    provider.add_txt(zone, fqdn, "v-wildcard", 60)
    provider.add_txt(zone, fqdn, "v-apex", 60)
    provider.add_txt(zone, fqdn, "v-apex", 60)
    assert sorted(read(fqdn)) == sorted([shown("v-apex"), shown("v-wildcard")])
    provider.remove_txt(zone, fqdn, "v-wildcard")
    assert read(fqdn) == [shown("v-apex")]
    provider.remove_txt(zone, fqdn, "v-apex")
    assert read(fqdn) == []
    provider.remove_txt(zone, fqdn, "v-apex")
