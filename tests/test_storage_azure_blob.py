"""The `azure_blob` storage backend against Azurite (npm `azurite@3`, installed by tests/run.sh)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scaivault.runtime import Runtime
from scaivault.storage import StorageUnavailable
from tests.fakes import storage_conformance as conformance
from tests.fakes.keyrings import migrated_database, settings_for
from tests.fakes.servers import Subprocess, free_port, wait_for

# Azurite's documented development account (public, in Azurite's own source).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_VERSION = "2025-11-05"
TOOLS = Path(__file__).resolve().parent / "tools" / "node_modules" / ".bin"


def azurite_binary() -> str | None:
    local = TOOLS / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    binary = azurite_binary()
    if binary is None:
        pytest.fail("azurite is missing: npm install --prefix tests/tools azurite@3 (tests/run.sh does)")
    port = free_port()
    server = Subprocess([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                         "--disableTelemetry", "--loose"], log=tmp_path_factory.mktemp("azurite") / "azurite.log").start()
    server.endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    server.connection_string = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                                f"BlobEndpoint={server.endpoint};")
    try:
        wait_for(f"http://127.0.0.1:{port}/{ACCOUNT}?comp=list", timeout=30, ok=(200, 400, 403))
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(server.connection_string, api_version=API_VERSION) \
            .create_container("scaivault-test")
        yield server
    finally:
        server.stop()


@pytest.fixture
def connection_file(tmp_path, azurite):
    path = tmp_path / "blob-connection"
    path.write_text(azurite.connection_string)
    return str(path)


@pytest.fixture
def runtime(databases, base_env, tmp_path, connection_file):
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_PROVIDER="azure_blob", STORAGE_BUCKET="scaivault-test",
                            STORAGE_CONNECTION_STRING_FILE=connection_file, STORAGE_API_VERSION=API_VERSION,
                            STORAGE_PREFIX="vault")
    rt = Runtime(settings)
    yield rt
    rt.close()


def test_put_get_delete_exists(runtime):
    conformance.check_put_get_delete_exists(runtime.storage, runtime.keyring)
    assert runtime.storage.name == "azure_blob"


@pytest.mark.slow
def test_large_objects_stream_in_blocks(runtime):
    conformance.check_large_objects_stream(runtime.storage, runtime.keyring, size=9 * 1024 * 1024)


def test_detached_values_keep_the_envelope_in_the_row(runtime):
    conformance.check_detached_values_keep_the_envelope_in_the_row(runtime.storage, runtime.keyring)


def test_only_sealed_values_are_accepted(runtime):
    conformance.check_only_sealed_values_are_accepted(runtime.storage)


def test_an_unreachable_object_store_is_a_clear_error(databases, base_env, tmp_path):
    conn = tmp_path / "conn"
    conn.write_text(f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                    f"BlobEndpoint=http://127.0.0.1:{free_port()}/{ACCOUNT};")
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_PROVIDER="azure_blob", STORAGE_BUCKET="c", STORAGE_CONNECTION_STRING_FILE=str(conn),
                            STORAGE_RETRIES="0")
    rt = Runtime(settings)
    with pytest.raises(StorageUnavailable) as info:
        rt.storage.exists("anything")
    assert info.value.status == 503 and "azure_blob" in info.value.message
    rt.close()
