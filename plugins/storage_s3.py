"""`s3` and `minio` storage backends (boto3; STORAGE_ENDPOINT for MinIO and other S3-compatibles).

STORAGE_BUCKET (required), STORAGE_REGION, STORAGE_ENDPOINT, STORAGE_PREFIX; static
credentials STORAGE_ACCESS_KEY_ID / STORAGE_SECRET_ACCESS_KEY only when set, otherwise the
standard AWS credential chain (IAM role, web identity, profile).
"""
from __future__ import annotations

from typing import Iterator

from scaivault.config import ConfigError
from scaivault.plugins import hookimpl
from scaivault.storage import CHUNK_BYTES, CountingReader, ObjectNotFound, StorageBackend, StorageUnavailable, as_stream


class S3Storage(StorageBackend):
    name = "s3"

    def __init__(self, client, bucket: str, prefix: str = "", name: str = "s3"):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.name = name
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _unavailable(self, exc) -> StorageUnavailable:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        return StorageUnavailable(message=f"object store {self.name} failed ({code})")

    def put(self, key: str, data) -> int:
        stream = CountingReader(as_stream(data))
        try:
            # upload_fileobj switches to a multipart upload for large streams
            self.client.upload_fileobj(stream, self.bucket, self._key(key))
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return stream.count

    def open(self, key: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self._errors as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFound(message="no such object", details={"key": key}) from None
            raise self._unavailable(exc) from None
        return body.iter_chunks(CHUNK_BYTES)

    def delete(self, key: str) -> bool:
        existed = self.exists(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return existed

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except self._errors as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._unavailable(exc) from None


def _factory(name: str):
    def create(settings, runtime) -> S3Storage:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError("STORAGE_PROVIDER", f"the {name} backend needs boto3: pip install 'scaivault[s3]'") from None
        opts = settings.storage_options
        bucket = opts.get("STORAGE_BUCKET")
        if not bucket:
            raise ConfigError("STORAGE_BUCKET", f"is required for STORAGE_PROVIDER={name}")
        kwargs = {"region_name": opts.get("STORAGE_REGION") or "us-east-1",
                  "config": Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2},
                                   s3={"addressing_style": "path" if opts.get("STORAGE_ENDPOINT") else "auto"})}
        if opts.get("STORAGE_ENDPOINT"):
            kwargs["endpoint_url"] = opts["STORAGE_ENDPOINT"]
        if opts.get("STORAGE_ACCESS_KEY_ID"):
            kwargs["aws_access_key_id"] = opts["STORAGE_ACCESS_KEY_ID"]
            kwargs["aws_secret_access_key"] = opts.get("STORAGE_SECRET_ACCESS_KEY")
        client = boto3.session.Session().client("s3", **kwargs)
        return S3Storage(client, bucket, opts.get("STORAGE_PREFIX", ""), name)

    return create


@hookimpl
def scaivault_storage_backends():
    return {"s3": _factory("s3"), "minio": _factory("minio")}
