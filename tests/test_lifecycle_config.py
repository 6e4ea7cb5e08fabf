"""The lifecycle variables: ROTATION_SCAN_INTERVAL, WEBHOOK_ALLOW_HTTP, WEBHOOK_ALLOWED_NETWORKS."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from scaivault.config import ConfigError, load_settings
from scaivault.devmode import dev_environment

BASE = {"DATABASE_URL": "postgresql://u@h/db"}


def test_defaults_are_https_only_public_addresses_and_a_one_minute_scan():
    s = load_settings(BASE, dev_mode=True)
    assert s.rotation_scan_interval == 60 and s.webhook_allow_http is False and s.webhook_allowed_networks == ()


def test_values_are_parsed_and_bad_ones_name_the_variable():
    s = load_settings({**BASE, "ROTATION_SCAN_INTERVAL": "5m", "WEBHOOK_ALLOW_HTTP": "true",
                       "WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.5"}, dev_mode=True)
    assert s.rotation_scan_interval == 300 and s.webhook_allow_http is True
    assert s.webhook_allowed_networks == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.5/32"))
    for name, value in (("WEBHOOK_ALLOWED_NETWORKS", "not-a-cidr"), ("ROTATION_SCAN_INTERVAL", "often"),
                        ("WEBHOOK_ALLOW_HTTP", "maybe")):
        with pytest.raises(ConfigError) as info:
            load_settings({**BASE, name: value}, dev_mode=True)
        assert info.value.variable == name


def test_dev_mode_allows_http_webhooks_to_loopback():
    env = dev_environment({}, Path("/tmp/x"), "127.0.0.1:8200", "postgresql://u@h/db")
    s = load_settings(env, dev_mode=True)
    assert s.webhook_allow_http is True
    assert ipaddress.ip_address("127.0.0.1") in s.webhook_allowed_networks[0]
