"""What every KMS provider must do; each tests/test_kms_<name>.py runs these against a real server."""
from __future__ import annotations

import os

import pytest

from scaivault.config import ConfigError
from scaivault.crypto import KmsError, SealContext
from scaivault.crypto.errors import KmsUnavailable
from scaivault.plugins import select
from tests.fakes.keyrings import counting_keyring

AAD = b"scaivault/conformance"


def provider(settings, key_ref=None):
    return select("scaivault_kms_providers", settings.kms_provider).factory(settings, key_ref)


def check_wrap_round_trip(settings) -> None:
    kms = provider(settings)
    key = os.urandom(32)
    wrapped = kms.wrap(key, AAD)
    assert key not in wrapped
    assert kms.unwrap(wrapped, AAD) == key
    assert kms.wrap(key, AAD) != wrapped or kms.name == "pkcs11-deterministic"
    kms.close()


def check_tampered_or_misbound_ciphertext_is_refused(settings) -> None:
    kms = provider(settings)
    wrapped = kms.wrap(os.urandom(32), AAD)
    tampered = bytearray(wrapped)
    tampered[len(tampered) // 2] ^= 0x40
    with pytest.raises(KmsError):
        kms.unwrap(bytes(tampered), AAD)
    if kms.supports_aad:
        with pytest.raises(KmsError):
            kms.unwrap(wrapped, AAD + b"-moved")
    kms.close()


def check_keyring_round_trip(settings) -> None:
    ring, calls = counting_keyring(settings)
    root = ring.ensure_root()
    assert root.provider == settings.kms_provider
    ctx = SealContext("ptn_conf", "tnt_conf", "secret", "kms/conformance", 1)
    sealed = ring.seal(ctx, b"conformance value")
    ring.clear_cache()
    assert ring.open(ctx, sealed) == b"conformance value"
    assert calls["unwrap"] >= 1
    assert ring.health()["status"] == "ok"
    ring.close()
    ring.db.close()


def check_wrong_key_refuses_start(settings, wrong_settings) -> None:
    ring, _ = counting_keyring(settings)
    ring.ensure_root()
    other, _ = counting_keyring(wrong_settings)
    with pytest.raises(ConfigError) as info:
        other.ensure_root()
    assert "cannot open the stored encryption root" in info.value.problem
    ring.db.close()
    other.db.close()


def check_unreachable_kms_is_a_clear_error(down_settings) -> None:
    try:
        kms = provider(down_settings)
    except (KmsUnavailable, KmsError) as exc:          # some SDKs connect while being set up
        assert exc.status == 503
        return
    with pytest.raises(KmsUnavailable) as info:
        kms.wrap(os.urandom(32), AAD)
    assert info.value.status == 503 and info.value.code == "kms_unavailable"
    ring, _ = counting_keyring(down_settings)
    with pytest.raises(ConfigError) as start:
        ring.ensure_root()
    assert "cannot create the encryption root" in start.value.problem
    health = ring.health()
    assert health["status"] == "error"
    ring.db.close()
