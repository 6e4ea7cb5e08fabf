"""The `s3` and `minio` storage backends against moto's S3 over real HTTP."""
from __future__ import annotations

import pytest

from scaivault.runtime import Runtime
from scaivault.storage import StorageUnavailable
from tests.fakes import storage_conformance as conformance
from tests.fakes.keyrings import migrated_database, settings_for
from tests.fakes.servers import MotoServer, closed_port_url


@pytest.fixture(scope="module")
def moto():
    server = MotoServer().start()
    server.client("s3").create_bucket(Bucket="scaivault-test")
    yield server
    server.stop()


@pytest.fixture(params=["s3", "minio"])
def runtime(request, databases, base_env, tmp_path, moto):
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_PROVIDER=request.param, STORAGE_BUCKET="scaivault-test",
                            STORAGE_ENDPOINT=moto.url, STORAGE_REGION="us-east-1", STORAGE_PREFIX=request.param,
                            STORAGE_ACCESS_KEY_ID="testing", STORAGE_SECRET_ACCESS_KEY="testing")
    rt = Runtime(settings)
    yield rt
    rt.close()


def test_put_get_delete_exists(runtime, moto):
    conformance.check_put_get_delete_exists(runtime.storage, runtime.keyring)
    assert runtime.storage.name == runtime.settings.storage_provider


def test_objects_hold_only_ciphertext_under_the_prefix(runtime, moto):
    from scaivault.crypto import SealContext

    runtime.storage.put_sealed(SealContext("p", "t", "artifact", "o", 1), "o", b"PLAINTEXT-IN-S3")
    body = moto.client("s3").get_object(Bucket="scaivault-test",
                                        Key=f"{runtime.settings.storage_provider}/o")["Body"].read()
    assert body.startswith(b"SV\x01") and b"PLAINTEXT-IN-S3" not in body


@pytest.mark.slow
def test_large_objects_stream_through_multipart_upload(runtime):
    conformance.check_large_objects_stream(runtime.storage, runtime.keyring)


def test_detached_values_keep_the_envelope_in_the_row(runtime):
    conformance.check_detached_values_keep_the_envelope_in_the_row(runtime.storage, runtime.keyring)


def test_only_sealed_values_are_accepted(runtime):
    conformance.check_only_sealed_values_are_accepted(runtime.storage)


def test_an_unreachable_object_store_is_a_clear_error(databases, base_env, tmp_path):
    settings = settings_for(base_env, migrated_database(databases), KMS_LOCAL_KEY_FILE=str(tmp_path / "k"),
                            STORAGE_PROVIDER="s3", STORAGE_BUCKET="b", STORAGE_ENDPOINT=closed_port_url(),
                            STORAGE_ACCESS_KEY_ID="x", STORAGE_SECRET_ACCESS_KEY="y")
    rt = Runtime(settings)
    with pytest.raises(StorageUnavailable) as info:
        rt.storage.exists("anything")
    assert info.value.status == 503 and "s3" in info.value.message
    rt.close()
