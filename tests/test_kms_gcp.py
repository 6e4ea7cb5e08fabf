"""The `gcp` KMS provider: the real google-cloud-kms client (REST) against tests/fakes/gcp_kms.py."""
from __future__ import annotations

import pytest

from scaivault.crypto import SealContext
from scaivault.crypto.rotation import rotate_root
from tests.fakes import kms_conformance as conformance
from tests.fakes.gcp_kms import FakeCloudKms
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for
from tests.fakes.servers import closed_port_url

RING = "projects/acme/locations/global/keyRings/scaivault/cryptoKeys"


@pytest.fixture(scope="module")
def cloud_kms():
    fake = FakeCloudKms().start()
    yield fake
    fake.stop()


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


def env(endpoint, key, **extra):
    return {"KMS_PROVIDER": "gcp", "KMS_KEY_NAME": key, "KMS_ENDPOINT": endpoint, "KMS_LOCAL_KEY_FILE": None, **extra}


@pytest.fixture
def settings(request, base_env, db_url, cloud_kms):
    key = cloud_kms.create_key(f"{RING}/{request.node.name[:30]}")
    return settings_for(base_env, db_url, **env(cloud_kms.url, key))


def test_wrap_round_trip(settings):
    conformance.check_wrap_round_trip(settings)


def test_tampered_or_misbound_ciphertext_is_refused(settings):
    conformance.check_tampered_or_misbound_ciphertext_is_refused(settings)


def test_keyring_seals_and_opens_through_cloud_kms(settings):
    conformance.check_keyring_round_trip(settings)


def test_a_key_with_other_material_refuses_to_start(base_env, db_url, cloud_kms, settings):
    ring, _ = counting_keyring(settings)
    ring.ensure_root()
    cloud_kms.create_key(settings.kms_options["KMS_KEY_NAME"])          # recreated: new material
    fresh, _ = counting_keyring(settings)
    with pytest.raises(Exception) as info:
        fresh.ensure_root()
    assert "cannot open the stored encryption root" in str(info.value)
    ring.db.close()
    fresh.db.close()


def test_permission_denied_and_disabled_keys_are_clear_errors(base_env, db_url, cloud_kms):
    denied = cloud_kms.create_key(f"{RING}/root-denied")
    kms = conformance.provider(settings_for(base_env, db_url, **env(cloud_kms.url, denied)))
    with pytest.raises(Exception) as info:
        kms.wrap(b"k" * 32, b"aad")
    assert info.value.code == "kms_error" and "denied" in info.value.message
    disabled = cloud_kms.create_key(f"{RING}/root-disabled")
    cloud_kms.keys[disabled]["enabled"] = False
    kms = conformance.provider(settings_for(base_env, db_url, **env(cloud_kms.url, disabled)))
    with pytest.raises(Exception) as info:
        kms.wrap(b"k" * 32, b"aad")
    assert "not enabled" in info.value.message


def test_unreachable_cloud_kms_is_a_clear_error(base_env, db_url):
    down = settings_for(base_env, db_url, **env(closed_port_url(), f"{RING}/down", KMS_TIMEOUT="0.5"))
    conformance.check_unreachable_kms_is_a_clear_error(down)


def test_a_malformed_key_name_is_a_configuration_error(base_env, db_url, cloud_kms):
    with pytest.raises(Exception) as info:
        conformance.provider(settings_for(base_env, db_url, **env(cloud_kms.url, "root")))
    assert info.value.variable == "KMS_KEY_NAME"


def test_root_rotation_creates_a_primary_key_version(settings, cloud_kms):
    ring, _ = counting_keyring(settings)
    ctx = SealContext("ptn_g", "tnt_g", "secret", "p", 1)
    sealed = ring.seal(ctx, b"v")
    result = rotate_root(ring)
    assert result.kms_key_version_created and result.rewrapped == 1
    assert cloud_kms.keys[settings.kms_options["KMS_KEY_NAME"]]["primary"] == 2
    ring.clear_cache()
    assert ring.open(ctx, sealed) == b"v"
    ring.db.close()
