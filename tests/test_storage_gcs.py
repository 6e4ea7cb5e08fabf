"""The `gcs` storage backend against gcp-storage-emulator over real HTTP."""
from __future__ import annotations

import pytest

from scaivault.runtime import Runtime
from scaivault.storage import StorageUnavailable
from tests.fakes import storage_conformance as conformance
from tests.fakes.keyrings import migrated_database, settings_for
from tests.fakes.servers import Subprocess, closed_port_url, executable, free_port, wait_for


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    binary = executable("gcp-storage-emulator")
    if binary is None:
        pytest.fail("gcp-storage-emulator is missing: it is in the [test] extra")
    port = free_port()
    server = Subprocess([binary, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                         "--default-bucket", "scaivault-test"],
                        log=tmp_path_factory.mktemp("gcs") / "emulator.log").start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        wait_for(server.url + "/storage/v1/b", timeout=30)
        yield server
    finally:
        server.stop()


@pytest.fixture
def runtime(databases, base_env, tmp_path, emulator):
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_PROVIDER="gcs", STORAGE_BUCKET="scaivault-test", STORAGE_ENDPOINT=emulator.url,
                            STORAGE_PREFIX="vault")
    rt = Runtime(settings)
    yield rt
    rt.close()


def test_put_get_delete_exists(runtime):
    conformance.check_put_get_delete_exists(runtime.storage, runtime.keyring)
    assert runtime.storage.name == "gcs"


@pytest.mark.slow
def test_large_objects_stream_through_resumable_upload(runtime):
    conformance.check_large_objects_stream(runtime.storage, runtime.keyring, size=9 * 1024 * 1024)


def test_detached_values_keep_the_envelope_in_the_row(runtime):
    conformance.check_detached_values_keep_the_envelope_in_the_row(runtime.storage, runtime.keyring)


def test_only_sealed_values_are_accepted(runtime):
    conformance.check_only_sealed_values_are_accepted(runtime.storage)


def test_an_unreachable_object_store_is_a_clear_error(databases, base_env, tmp_path):
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_PROVIDER="gcs", STORAGE_BUCKET="b", STORAGE_ENDPOINT=closed_port_url(),
                            STORAGE_TIMEOUT="1")
    rt = Runtime(settings)
    with pytest.raises(StorageUnavailable) as info:
        rt.storage.exists("anything")
    assert info.value.status == 503 and "gcs" in info.value.message
    rt.close()
