"""`azure_blob` storage backend: Azure Blob Storage (azure-storage-blob), streaming both ways.

STORAGE_BUCKET (the container, required), STORAGE_PREFIX, and either
STORAGE_CONNECTION_STRING_FILE (a file holding a connection string, e.g. for Azurite) or
STORAGE_ACCOUNT_URL with DefaultAzureCredential (managed or workload identity).
STORAGE_API_VERSION pins the service API version (Azurite lags behind the SDK); STORAGE_RETRIES
(default 3) bounds retries of transient failures.
"""
from __future__ import annotations

from typing import Iterator

from scaivault.config import ConfigError
from scaivault.crypto.kms import read_secret_file
from scaivault.plugins import hookimpl
from scaivault.storage import CHUNK_BYTES, CountingReader, ObjectNotFound, StorageBackend, StorageUnavailable, as_stream


class AzureBlobStorage(StorageBackend):
    name = "azure_blob"

    def __init__(self, container_client, prefix: str = ""):
        self.container = container_client
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        from azure.core import exceptions as ax

        self._ax = ax

    def _fail(self, exc, key: str):
        if isinstance(exc, self._ax.ResourceNotFoundError):
            return ObjectNotFound(message="no such object", details={"key": key})
        return StorageUnavailable(message=f"object store azure_blob failed ({type(exc).__name__})")

    def put(self, key: str, data) -> int:
        stream = CountingReader(as_stream(data))
        try:
            # upload_blob with a stream and no length uploads it block by block
            self.container.upload_blob(self.prefix + key, stream, overwrite=True, max_concurrency=2)
        except self._ax.AzureError as exc:
            raise self._fail(exc, key) from None
        return stream.count

    def open(self, key: str) -> Iterator[bytes]:
        try:
            downloader = self.container.download_blob(self.prefix + key)
        except self._ax.AzureError as exc:
            raise self._fail(exc, key) from None
        return iter(downloader.chunks())

    def delete(self, key: str) -> bool:
        try:
            self.container.delete_blob(self.prefix + key)
            return True
        except self._ax.ResourceNotFoundError:
            return False
        except self._ax.AzureError as exc:
            raise self._fail(exc, key) from None

    def exists(self, key: str) -> bool:
        try:
            return self.container.get_blob_client(self.prefix + key).exists()
        except self._ax.AzureError as exc:
            raise self._fail(exc, key) from None

    def close(self) -> None:
        self.container.close()


def create(settings, runtime) -> AzureBlobStorage:
    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError:
        raise ConfigError("STORAGE_PROVIDER", "the azure_blob backend needs azure-storage-blob: "
                                              "pip install 'scaivault[azure_blob]'") from None
    opts = settings.storage_options
    container = opts.get("STORAGE_BUCKET")
    if not container:
        raise ConfigError("STORAGE_BUCKET", "is required for STORAGE_PROVIDER=azure_blob (the container name)")
    try:
        retries = int(opts.get("STORAGE_RETRIES", 3))
    except ValueError:
        raise ConfigError("STORAGE_RETRIES", "must be an integer") from None
    from azure.storage.blob import ExponentialRetry

    # the SDK's default waits 15 s before its first retry; a dead endpoint should fail sooner
    kwargs = {"retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries),
              "connection_timeout": 5, "read_timeout": 30,
              "max_single_put_size": 4 * 1024 * 1024, "max_block_size": 4 * 1024 * 1024,
              "max_chunk_get_size": CHUNK_BYTES, "max_single_get_size": CHUNK_BYTES}
    if opts.get("STORAGE_API_VERSION"):
        kwargs["api_version"] = opts["STORAGE_API_VERSION"]
    if opts.get("STORAGE_CONNECTION_STRING_FILE"):
        conn = read_secret_file("STORAGE_CONNECTION_STRING_FILE", opts["STORAGE_CONNECTION_STRING_FILE"])
        service = BlobServiceClient.from_connection_string(conn, **kwargs)
    elif opts.get("STORAGE_ACCOUNT_URL"):
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(opts["STORAGE_ACCOUNT_URL"], credential=DefaultAzureCredential(), **kwargs)
    else:
        raise ConfigError("STORAGE_ACCOUNT_URL", "or STORAGE_CONNECTION_STRING_FILE is required for STORAGE_PROVIDER=azure_blob")
    return AzureBlobStorage(service.get_container_client(container), opts.get("STORAGE_PREFIX", ""))


@hookimpl
def scaivault_storage_backends():
    return {"azure_blob": create}
