"""The default `db` storage backend: sealed objects in PostgreSQL, with a size limit."""
from __future__ import annotations

import pytest

from scaivault.config import ConfigError
from scaivault.runtime import Runtime
from scaivault.storage import ObjectTooLarge
from tests.fakes import storage_conformance as conformance
from tests.fakes.keyrings import migrated_database, settings_for


@pytest.fixture
def runtime(databases, base_env, tmp_path):
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_DB_MAX_BYTES="20m")
    rt = Runtime(settings)
    yield rt
    rt.close()


def test_db_is_the_default_backend(runtime):
    assert runtime.storage.name == "db"


def test_put_get_delete_exists(runtime):
    conformance.check_put_get_delete_exists(runtime.storage, runtime.keyring)


@pytest.mark.slow
def test_large_objects_stream(runtime):
    conformance.check_large_objects_stream(runtime.storage, runtime.keyring)


def test_detached_values_keep_the_envelope_in_the_row(runtime):
    conformance.check_detached_values_keep_the_envelope_in_the_row(runtime.storage, runtime.keyring)


def test_only_sealed_values_are_accepted(runtime):
    conformance.check_only_sealed_values_are_accepted(runtime.storage)


def test_bad_keys_are_refused(runtime):
    conformance.check_bad_keys_are_refused(runtime.storage, runtime.keyring)


def test_objects_over_storage_db_max_bytes_are_refused_with_a_clear_error(databases, base_env, tmp_path):
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_DB_MAX_BYTES="1k")
    rt = Runtime(settings)
    from scaivault.crypto import SealContext

    sealed = rt.keyring.seal(SealContext("p", "t", "artifact", "big", 1), b"x" * 2000)
    with pytest.raises(ObjectTooLarge) as info:
        rt.storage.put("big", sealed)
    assert info.value.status == 413 and "STORAGE_DB_MAX_BYTES" in info.value.message
    assert not rt.storage.exists("big")
    rt.close()


def test_unknown_storage_provider_fails_listing_installed_backends(databases, base_env, tmp_path):
    settings = settings_for(base_env, migrated_database(databases), STORAGE_PROVIDER="floppy")
    rt = Runtime(settings)
    with pytest.raises(ConfigError) as info:
        rt.storage
    assert info.value.variable == "STORAGE_PROVIDER"
    assert "floppy" in info.value.problem and "db" in info.value.problem and "s3" in info.value.problem
    rt.close()


def test_scaivault_serve_refuses_an_unknown_storage_provider(databases, base_env, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, **base_env, "DATABASE_URL": migrated_database(databases),
           "KMS_LOCAL_KEY_FILE": str(tmp_path / "k"), "STORAGE_PROVIDER": "floppy", "BIND_ADDRESS": "127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "scaivault.cli", "serve", "--no-migrate"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "STORAGE_PROVIDER" in done.stderr and "floppy" in done.stderr and "azure_blob" in done.stderr
