"""The `azure` KMS provider: the real azure-keyvault-keys client against a fake HTTPS Key Vault."""
from __future__ import annotations

import pytest

from scaivault.crypto import SealContext
from scaivault.crypto.rotation import rotate_root
from tests.fakes import kms_conformance as conformance
from tests.fakes.azure_keyvault import FakeKeyVault
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for
from tests.fakes.servers import free_port

TOKEN = "fake-aad-access-token"


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    fake = FakeKeyVault(tmp_path_factory.mktemp("keyvault"), TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "aad-token"
    path.write_text(TOKEN)
    return str(path)


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


def env(vault, key_url, token_file, **extra):
    return {"KMS_PROVIDER": "azure", "KMS_KEY_URL": key_url, "KMS_AUTH_TOKEN_FILE": token_file,
            "KMS_CA_CERT": vault.ca_file, "KMS_AZURE_VERIFY_CHALLENGE": "false", "KMS_LOCAL_KEY_FILE": None, **extra}


@pytest.fixture
def settings(request, base_env, db_url, vault, token_file):
    key_url = vault.create_key(request.node.name[5:35].replace("_", "-"))
    return settings_for(base_env, db_url, **env(vault, key_url, token_file))


def test_wrap_round_trip(settings, vault):
    conformance.check_wrap_round_trip(settings)
    assert "wrapkey" in vault.calls and "unwrapkey" in vault.calls


def test_tampered_ciphertext_is_refused(settings):
    conformance.check_tampered_or_misbound_ciphertext_is_refused(settings)


def test_keyring_seals_and_opens_through_key_vault(settings):
    conformance.check_keyring_round_trip(settings)


def test_a_key_with_other_material_refuses_to_start(base_env, db_url, vault, token_file, settings):
    ring, _ = counting_keyring(settings)
    ring.ensure_root()
    vault.create_key(settings.kms_options["KMS_KEY_URL"].rsplit("/", 1)[1])   # recreated: new material
    fresh, _ = counting_keyring(settings)
    with pytest.raises(Exception) as info:
        fresh.ensure_root()
    assert "cannot open the stored encryption root" in str(info.value)
    ring.db.close()
    fresh.db.close()


def test_a_wrong_token_and_a_disabled_key_are_clear_errors(base_env, db_url, vault, tmp_path, settings):
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token")
    kms = conformance.provider(settings_for(base_env, db_url, **env(vault, settings.kms_options["KMS_KEY_URL"], str(bad))))
    with pytest.raises(Exception) as info:
        kms.wrap(b"k" * 32, b"aad")
    assert info.value.code == "kms_error" and "credentials" in info.value.message
    assert "not-the-token" not in info.value.message
    name = settings.kms_options["KMS_KEY_URL"].rsplit("/", 1)[1]
    vault.keys[name]["enabled"] = False
    kms = conformance.provider(settings)
    with pytest.raises(Exception) as info:
        kms.wrap(b"k" * 32, b"aad")
    assert info.value.code == "kms_error" and "denied" in info.value.message


def test_plain_http_key_urls_are_refused(base_env, db_url, vault, token_file):
    with pytest.raises(Exception) as info:
        conformance.provider(settings_for(base_env, db_url, **env(vault, "http://127.0.0.1:1/keys/x", token_file)))
    assert info.value.variable == "KMS_KEY_URL"


def test_unreachable_key_vault_is_a_clear_error(base_env, db_url, vault, token_file):
    down = settings_for(base_env, db_url, **env(vault, f"https://127.0.0.1:{free_port()}/keys/root", token_file))
    conformance.check_unreachable_kms_is_a_clear_error(down)


def test_root_rotation_creates_a_key_version_and_old_values_stay_readable(settings, vault):
    ring, _ = counting_keyring(settings)
    ctx = SealContext("ptn_az", "tnt_az", "secret", "p", 1)
    sealed = ring.seal(ctx, b"v")
    result = rotate_root(ring)
    assert result.kms_key_version_created and result.rewrapped == 1
    name = settings.kms_options["KMS_KEY_URL"].rsplit("/", 1)[1]
    assert len(vault.keys[name]["versions"]) == 2
    ring.clear_cache()
    assert ring.open(ctx, sealed) == b"v"
    ring.db.close()
