"""The `hashicorp` KMS provider against a real OpenBao dev server (Transit engine)."""
from __future__ import annotations

import pytest

from scaivault.crypto import SealContext
from scaivault.crypto.rotation import rotate_root
from tests.fakes import kms_conformance as conformance
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for
from tests.fakes.servers import OPENBAO_ROOT_TOKEN as ROOT_TOKEN
from tests.fakes.servers import closed_port_url, start_openbao


@pytest.fixture(scope="module")
def bao(tmp_path_factory):
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    try:
        server.client.sys.enable_secrets_engine("transit", path="transit")
        yield server
    finally:
        server.stop()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "vault-token"
    path.write_text(ROOT_TOKEN + "\n")
    return str(path)


def transit_key(bao, name):
    bao.client.secrets.transit.create_key(name=name, key_type="aes256-gcm96")
    return name


def env(bao, key, token_file, **extra):
    return {"KMS_PROVIDER": "hashicorp", "KMS_ENDPOINT": bao.url, "KMS_KEY_NAME": key,
            "KMS_AUTH_TOKEN_FILE": token_file, "KMS_LOCAL_KEY_FILE": None, **extra}


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


@pytest.fixture
def settings(request, base_env, db_url, bao, token_file):
    return settings_for(base_env, db_url, **env(bao, transit_key(bao, request.node.name[:40]), token_file))


def test_wrap_round_trip(settings):
    conformance.check_wrap_round_trip(settings)


def test_tampered_or_misbound_ciphertext_is_refused(settings):
    conformance.check_tampered_or_misbound_ciphertext_is_refused(settings)


def test_keyring_seals_and_opens_through_transit(settings):
    conformance.check_keyring_round_trip(settings)


def test_a_transit_key_with_other_material_refuses_to_start(base_env, db_url, bao, token_file, settings):
    ring, _ = counting_keyring(settings)
    ring.ensure_root()
    name = settings.kms_options["KMS_KEY_NAME"]
    bao.client.secrets.transit.update_key_configuration(name=name, deletion_allowed=True)
    bao.client.secrets.transit.delete_key(name=name)
    transit_key(bao, name)                                  # same name, new material
    fresh, _ = counting_keyring(settings)
    with pytest.raises(Exception) as info:
        fresh.ensure_root()
    assert "cannot open the stored encryption root" in str(info.value)
    ring.db.close()
    fresh.db.close()


def test_a_token_without_permission_is_a_clear_error(base_env, db_url, bao, tmp_path):
    key = transit_key(bao, "denied-key")
    bao.client.sys.create_or_update_policy("nothing", 'path "sys/health" { capabilities = ["read"] }')
    weak = bao.client.auth.token.create(policies=["nothing"])["auth"]["client_token"]
    path = tmp_path / "weak-token"
    path.write_text(weak)
    settings = settings_for(base_env, db_url, **env(bao, key, str(path)))
    kms = conformance.provider(settings)
    with pytest.raises(Exception) as info:
        kms.wrap(b"k" * 32, b"aad")
    assert info.value.code == "kms_error" and "denied" in info.value.message
    assert weak not in info.value.message


def test_unreachable_vault_is_a_clear_error(base_env, db_url, bao, token_file):
    down = settings_for(base_env, db_url, **env(bao, "k", token_file, KMS_ENDPOINT=closed_port_url()))
    conformance.check_unreachable_kms_is_a_clear_error(down)


def test_root_rotation_rotates_the_transit_key(settings, bao):
    ring, _ = counting_keyring(settings)
    ctx = SealContext("ptn_v", "tnt_v", "secret", "p", 1)
    sealed = ring.seal(ctx, b"v")
    result = rotate_root(ring)
    assert result.kms_key_version_created and result.rewrapped == 1
    wrapped = bytes(ring.db.scalar("SELECT wrapped FROM partner_keys"))
    assert wrapped.startswith(b"vault:v2:")
    ring.clear_cache()
    assert ring.open(ctx, sealed) == b"v"
    ring.db.close()


def test_a_renewed_token_in_the_token_file_is_picked_up(base_env, db_url, bao, tmp_path):
    key = transit_key(bao, "renewed-token-key")
    bao.client.sys.create_or_update_policy("transit-user", f'''
        path "transit/encrypt/{key}" {{ capabilities = ["update"] }}
        path "transit/decrypt/{key}" {{ capabilities = ["update"] }}''')
    first = bao.client.auth.token.create(policies=["transit-user"])["auth"]["client_token"]
    path = tmp_path / "agent-token"
    path.write_text(first)
    kms = conformance.provider(settings_for(base_env, db_url, **env(bao, key, str(path))))
    wrapped = kms.wrap(b"k" * 32, b"aad")
    bao.client.auth.token.revoke(first)
    path.write_text(bao.client.auth.token.create(policies=["transit-user"])["auth"]["client_token"])
    assert kms.unwrap(wrapped, b"aad") == b"k" * 32
