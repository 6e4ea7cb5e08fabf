"""The `pkcs11` KMS provider against a real SoftHSM2 token (AES-GCM inside the HSM)."""
from __future__ import annotations

import os

import pytest

from tests.fakes import kms_conformance as conformance
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for
from tests.hsm_support import pkcs11_env, softhsm_token, write_pin_file


@pytest.fixture(scope="module")
def softhsm():
    return softhsm_token()


@pytest.fixture
def pin_file(tmp_path):
    return write_pin_file(tmp_path)


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


def env(pin_file, label="root-a", **extra):
    return pkcs11_env(pin_file, label, **extra)


@pytest.fixture
def settings(softhsm, base_env, db_url, pin_file):
    return settings_for(base_env, db_url, **env(pin_file))


def test_wrap_round_trip(settings):
    conformance.check_wrap_round_trip(settings)


def test_tampered_or_misbound_ciphertext_is_refused(settings):
    conformance.check_tampered_or_misbound_ciphertext_is_refused(settings)


def test_keyring_seals_and_opens_through_the_hsm(settings):
    conformance.check_keyring_round_trip(settings)


def test_the_slot_number_works_too(softhsm, base_env, db_url, pin_file):
    settings = settings_for(base_env, db_url, **env(pin_file, KMS_TOKEN_LABEL=None, KMS_SLOT=str(softhsm["slot"])))
    conformance.check_wrap_round_trip(settings)


def test_another_hsm_key_refuses_to_start(softhsm, base_env, db_url, pin_file, settings):
    ring, _ = counting_keyring(settings)
    ring.ensure_root()
    ring.db.execute("UPDATE kms_roots SET key_ref = 'root-b'")
    wrong = settings_for(base_env, db_url, **env(pin_file, label="root-b"))
    conformance_ring, _ = counting_keyring(wrong)
    with pytest.raises(Exception) as info:
        conformance_ring.ensure_root()
    assert "cannot open the stored encryption root" in str(info.value)
    ring.db.close()
    conformance_ring.db.close()


def test_a_wrong_pin_is_a_clear_error_without_the_pin(softhsm, base_env, db_url, tmp_path):
    bad = tmp_path / "bad-pin"
    bad.write_text("999999")
    settings = settings_for(base_env, db_url, **env(str(bad)))
    with pytest.raises(Exception) as info:
        conformance.provider(settings)
    assert "CKR_PIN_INCORRECT" in str(info.value) and "999999" not in str(info.value)


def test_a_missing_token_is_a_clear_error(softhsm, base_env, db_url, pin_file):
    down = settings_for(base_env, db_url, **env(pin_file, KMS_TOKEN_LABEL="no-such-token"))
    conformance.check_unreachable_kms_is_a_clear_error(down)


def test_a_missing_key_label_is_a_clear_error(softhsm, base_env, db_url, pin_file):
    settings = settings_for(base_env, db_url, **env(pin_file, label="nope"))
    with pytest.raises(Exception) as info:
        conformance.provider(settings)
    assert "no secret key labelled 'nope'" in str(info.value)


def test_secondary_hsm_key_takes_over(softhsm, base_env, db_url, pin_file):
    from scaivault.crypto import SealContext

    settings = settings_for(base_env, db_url, **env(pin_file, KMS_KEY_ID_SECONDARY="root-b"))
    ring, _ = counting_keyring(settings)
    ctx = SealContext("ptn_hsm", "tnt_hsm", "secret", "p", 1)
    sealed = ring.seal(ctx, b"v")
    ring.db.close()
    # the primary label disappears from configuration's reach: its key object is gone
    down = settings_for(base_env, db_url, **env(pin_file, label="root-missing", KMS_KEY_ID_SECONDARY="root-b"))
    other, _ = counting_keyring(down)
    other.db.execute("UPDATE kms_roots SET key_ref = 'root-missing'")
    assert other.open(ctx, sealed) == b"v"
    assert other.health()["status"] == "degraded"
    other.db.close()


def test_a_forked_worker_opens_its_own_hsm_session(settings):
    """gunicorn forks workers after first boot used the HSM in the master process."""
    kms = conformance.provider(settings)
    wrapped = kms.wrap(b"k" * 32, b"aad")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                            # the worker
        try:
            child = conformance.provider(settings)
            ok = child.unwrap(wrapped, b"aad") == b"k" * 32 and child.unwrap(child.wrap(b"x" * 32, b"a"), b"a") == b"x" * 32
            os.write(write, b"ok" if ok else b"bad")
        except BaseException as exc:                        # report, never raise into pytest's copy
            os.write(write, repr(exc).encode()[:200])
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 300) == b"ok"
    os.close(read)
    assert kms.unwrap(wrapped, b"aad") == b"k" * 32           # the parent's session still works


def test_a_dropped_hsm_session_is_reopened(settings):
    kms = conformance.provider(settings)
    wrapped = kms.wrap(b"k" * 32, b"aad")
    kms._token.session.closeSession()                       # as after an HSM restart
    assert kms.unwrap(wrapped, b"aad") == b"k" * 32
    other = conformance.provider(settings)                  # shares the re-opened session
    assert other.unwrap(other.wrap(b"x" * 32, b"a"), b"a") == b"x" * 32
