"""`gcs` storage backend: Google Cloud Storage (google-cloud-storage), streaming both ways.

STORAGE_BUCKET (required), STORAGE_PREFIX, STORAGE_PROJECT, STORAGE_TIMEOUT (seconds, default 30),
STORAGE_ENDPOINT (an emulator
or private endpoint; a plain-http endpoint uses anonymous credentials), STORAGE_CREDENTIALS_FILE
(a service-account JSON; otherwise Application Default Credentials).
"""
from __future__ import annotations

from typing import Iterator

from scaivault.config import ConfigError
from scaivault.plugins import hookimpl
from scaivault.storage import CHUNK_BYTES, ObjectNotFound, StorageBackend, StorageUnavailable, as_stream

UPLOAD_CHUNK = 8 * 256 * 1024          # resumable uploads need multiples of 256 KiB


class GcsStorage(StorageBackend):
    name = "gcs"

    def __init__(self, client, bucket: str, prefix: str = "", timeout: float = 30.0):
        self.client = client
        from google.cloud.storage.retry import DEFAULT_RETRY

        # retries of transient failures stop after `timeout` seconds instead of the SDK's 120
        self.retry = DEFAULT_RETRY.with_timeout(timeout)
        self.timeout = timeout
        self.bucket = client.bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        import requests
        from google.api_core import exceptions as gx

        self._gx = gx
        self._errors = (gx.GoogleAPIError, requests.RequestException)

    def _blob(self, key: str):
        return self.bucket.blob(self.prefix + key, chunk_size=UPLOAD_CHUNK)

    def _fail(self, exc, key: str):
        if isinstance(exc, self._gx.NotFound):
            return ObjectNotFound(message="no such object", details={"key": key})
        return StorageUnavailable(message=f"object store gcs failed ({type(exc).__name__})")

    def put(self, key: str, data) -> int:
        stream, size = as_stream(data), 0
        try:
            with self._blob(key).open("wb", content_type="application/octet-stream", retry=self.retry,
                                     timeout=self.timeout) as writer:
                while True:
                    chunk = stream.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    writer.write(chunk)
                    size += len(chunk)
        except self._errors as exc:
            raise self._fail(exc, key) from None
        return size

    def open(self, key: str) -> Iterator[bytes]:
        try:
            reader = self._blob(key).open("rb", chunk_size=CHUNK_BYTES, retry=self.retry, timeout=self.timeout)
        except self._errors as exc:
            raise self._fail(exc, key) from None
        return self._chunks(reader, key)

    def _chunks(self, reader, key: str) -> Iterator[bytes]:
        try:
            with reader:
                while True:
                    chunk = reader.read(CHUNK_BYTES)
                    if not chunk:
                        return
                    yield chunk
        except self._errors as exc:
            raise self._fail(exc, key) from None

    def get(self, key: str) -> bytes:
        try:
            return self._blob(key).download_as_bytes(retry=self.retry, timeout=self.timeout)
        except self._errors as exc:
            raise self._fail(exc, key) from None

    def delete(self, key: str) -> bool:
        try:
            self._blob(key).delete(retry=self.retry, timeout=self.timeout)
            return True
        except self._gx.NotFound:
            return False
        except self._errors as exc:
            raise self._fail(exc, key) from None

    def exists(self, key: str) -> bool:
        try:
            return self._blob(key).exists(retry=self.retry, timeout=self.timeout)
        except self._errors as exc:
            raise self._fail(exc, key) from None

    def close(self) -> None:
        self.client.close()


def create(settings, runtime) -> GcsStorage:
    try:
        from google.cloud import storage
    except ImportError:
        raise ConfigError("STORAGE_PROVIDER", "the gcs backend needs google-cloud-storage: "
                                              "pip install 'scaivault[gcs]'") from None
    opts = settings.storage_options
    bucket = opts.get("STORAGE_BUCKET")
    if not bucket:
        raise ConfigError("STORAGE_BUCKET", "is required for STORAGE_PROVIDER=gcs")
    credentials = None
    endpoint = opts.get("STORAGE_ENDPOINT")
    if opts.get("STORAGE_CREDENTIALS_FILE"):
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(opts["STORAGE_CREDENTIALS_FILE"])
    elif endpoint and endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    client = storage.Client(project=opts.get("STORAGE_PROJECT") or "scaivault", credentials=credentials,
                            client_options={"api_endpoint": endpoint} if endpoint else None)
    try:
        timeout = float(opts.get("STORAGE_TIMEOUT", 30))
    except ValueError:
        raise ConfigError("STORAGE_TIMEOUT", "must be a number of seconds") from None
    return GcsStorage(client, bucket, opts.get("STORAGE_PREFIX", ""), timeout)


@hookimpl
def scaivault_storage_backends():
    return {"gcs": create}
