"""The `aws` KMS provider against moto's KMS over real HTTP."""
from __future__ import annotations

import pytest

from scaivault.crypto import SealContext
from tests.fakes import kms_conformance as conformance
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for
from tests.fakes.servers import MotoServer, closed_port_url


@pytest.fixture(scope="module")
def moto():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


def aws_env(moto, key_id, **extra):
    return {"KMS_PROVIDER": "aws", "KMS_KEY_ID": key_id, "KMS_ENDPOINT": moto.url, "KMS_REGION": "us-east-1",
            "KMS_ACCESS_KEY_ID": "testing", "KMS_SECRET_ACCESS_KEY": "testing", "KMS_LOCAL_KEY_FILE": None, **extra}


@pytest.fixture
def key_id(moto):
    return moto.client("kms").create_key(Description="scaivault root")["KeyMetadata"]["Arn"]


@pytest.fixture
def settings(base_env, db_url, moto, key_id):
    return settings_for(base_env, db_url, **aws_env(moto, key_id))


def test_wrap_round_trip(settings):
    conformance.check_wrap_round_trip(settings)


def test_tampered_or_misbound_ciphertext_is_refused(settings):
    conformance.check_tampered_or_misbound_ciphertext_is_refused(settings)


def test_keyring_seals_and_opens_through_aws_kms(settings):
    conformance.check_keyring_round_trip(settings)


def test_an_alias_names_the_key(base_env, db_url, moto, key_id):
    moto.client("kms").create_alias(AliasName="alias/scaivault-test", TargetKeyId=key_id)
    conformance.check_keyring_round_trip(settings_for(base_env, db_url, **aws_env(moto, "alias/scaivault-test")))


def test_a_different_key_refuses_to_start(base_env, db_url, moto, settings):
    other = moto.client("kms").create_key()["KeyMetadata"]["Arn"]
    # the stored root names the first key; replace it with another key under the same reference
    ring, _ = counting_keyring(settings)
    ring.ensure_root()
    ring.db.execute("UPDATE kms_roots SET key_ref = :k", k=other)
    wrong = settings_for(base_env, db_url, **aws_env(moto, other))
    fresh, _ = counting_keyring(wrong)
    with pytest.raises(Exception) as info:
        fresh.ensure_root()
    assert "cannot open the stored encryption root" in str(info.value)
    ring.db.close()
    fresh.db.close()


def test_unreachable_kms_is_a_clear_error(base_env, db_url, key_id, moto):
    down = settings_for(base_env, db_url, **aws_env(moto, key_id, KMS_ENDPOINT=closed_port_url(), KMS_RETRIES="1"))
    conformance.check_unreachable_kms_is_a_clear_error(down)


def test_root_rotation_asks_kms_for_new_key_material(settings):
    from scaivault.crypto.rotation import rotate_root

    ring, _ = counting_keyring(settings)
    ctx = SealContext("ptn_aws", "tnt_aws", "secret", "p", 1)
    sealed = ring.seal(ctx, b"v")
    result = rotate_root(ring)
    assert result.kms_key_version_created is True and result.rewrapped == 1
    assert ring.open(ctx, sealed) == b"v"
    ring.db.close()


@pytest.mark.slow
def test_failover_to_a_secondary_moto_key_when_the_primary_region_is_down(base_env, db_url, moto):
    primary_server = MotoServer().start()
    primary = primary_server.client("kms").create_key()["KeyMetadata"]["Arn"]
    secondary = moto.client("kms", region="eu-west-1").create_key()["KeyMetadata"]["Arn"]
    env = aws_env(primary_server, primary, KMS_KEY_ID_SECONDARY=secondary, KMS_ENDPOINT_SECONDARY=moto.url)
    ring, _ = counting_keyring(settings_for(base_env, db_url, **env))
    ctx = SealContext("ptn_ha", "tnt_ha", "secret", "ha/value", 1)
    sealed = ring.seal(ctx, b"survives a region outage")
    ring.db.close()
    primary_server.stop()
    degraded, calls = counting_keyring(settings_for(base_env, db_url, **env))
    degraded.ensure_root()
    assert degraded.open(ctx, sealed) == b"survives a region outage"
    assert degraded.health()["status"] == "degraded"
    degraded.db.close()
