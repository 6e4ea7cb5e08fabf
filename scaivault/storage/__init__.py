"""Object storage for sealed artifacts: the StorageBackend interface and backend selection.

A backend stores bytes under a key: put, get, open (streaming), delete, exists. It only
ever receives ciphertext sealed by the keyring; `SealedObjectStore` refuses anything else.
"""
from __future__ import annotations

import io
import re
from typing import BinaryIO, Iterator

from ..errors import ScaiVaultError

CHUNK_BYTES = 1024 * 1024
KEY_RE = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")
SEALED_PREFIX = b"SV\x01"


class ObjectNotFound(ScaiVaultError):
    code = "object_not_found"


class StorageUnavailable(ScaiVaultError):
    code = "storage_unavailable"


class ObjectTooLarge(ScaiVaultError):
    code = "object_too_large"


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > 512 or not KEY_RE.match(key) or ".." in key.split("/"):
        raise ScaiVaultError("invalid_request", "object key must be 1-512 characters of A-Z a-z 0-9 _ . = - and /")
    return key


def as_stream(data) -> BinaryIO:
    """bytes, a binary file object or an iterable of chunks, as a readable file object."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(data))
    if hasattr(data, "read"):
        return data
    return _IterStream(iter(data))


class CountingReader:
    """Wraps a stream and counts the bytes read through it (for backends that report sizes)."""

    def __init__(self, stream):
        self.stream = stream
        self.count = 0

    def read(self, size=-1):
        chunk = self.stream.read(size)
        self.count += len(chunk)
        return chunk


class _IterStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class StorageBackend:
    """Where sealed objects live. Subclasses implement the five operations."""

    name = "abstract"

    def put(self, key: str, data) -> int:
        """Store `data` (bytes, a binary file object or an iterable of chunks); returns its size."""
        raise NotImplementedError

    def open(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks (ObjectNotFound when absent)."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        return b"".join(self.open(key))

    def delete(self, key: str) -> bool:
        """Remove the object; False when there was none."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def health(self) -> dict:
        self.exists("scaivault-health-probe")
        return {"status": "ok"}

    def close(self) -> None:
        return None


class SealedObjectStore:
    """The backend as the rest of ScaiVault sees it: only keyring-sealed bytes go in."""

    def __init__(self, backend: StorageBackend, keyring=None):
        self.backend = backend
        self.keyring = keyring
        self.name = backend.name

    def put(self, key: str, data) -> int:
        check_key(key)
        stream = as_stream(data)
        head = stream.read(len(SEALED_PREFIX))
        if head != SEALED_PREFIX:
            raise ScaiVaultError("invalid_request", "object storage accepts only values sealed by the keyring")
        return self.backend.put(key, _prepend(head, stream))

    def get(self, key: str) -> bytes:
        return self.backend.get(check_key(key))

    def open(self, key: str) -> Iterator[bytes]:
        return self.backend.open(check_key(key))

    def delete(self, key: str) -> bool:
        return self.backend.delete(check_key(key))

    def exists(self, key: str) -> bool:
        return self.backend.exists(check_key(key))

    def put_sealed(self, ctx, key: str, plaintext: bytes) -> int:
        """Seal `plaintext` for `ctx` with the keyring and store the ciphertext."""
        return self.put(key, self.keyring.seal(ctx, plaintext))

    def get_opened(self, ctx, key: str) -> bytes:
        return self.keyring.open(ctx, self.get(key))

    def put_detached(self, ctx, key: str, plaintext: bytes) -> bytes:
        """Seal `plaintext`, store the ciphertext body under `key`, return the envelope for the row.

        The row keeps the object reference and the envelope (spec/10 section 5.1); the object
        store holds only ciphertext, which opens only with that envelope and context.
        """
        check_key(key)
        envelope_bytes, body = self.keyring.seal_detached(ctx, plaintext)
        self.backend.put(key, body)
        return envelope_bytes

    def get_detached(self, ctx, key: str, envelope_bytes: bytes) -> bytes:
        return self.keyring.open_detached(ctx, envelope_bytes, self.get(key))

    def health(self) -> dict:
        return self.backend.health()

    def close(self) -> None:
        self.backend.close()


def _prepend(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    yield head
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


def build_storage(settings, runtime) -> SealedObjectStore:
    """The STORAGE_PROVIDER backend (default `db`), selected among the installed plugins."""
    from ..plugins import select

    registration = select("scaivault_storage_backends", settings.storage_provider)
    backend = registration.factory(settings, runtime)
    return SealedObjectStore(backend, runtime.keyring)


__all__ = ["CountingReader", "StorageBackend", "SealedObjectStore", "ObjectNotFound", "StorageUnavailable", "ObjectTooLarge",
           "build_storage", "as_stream", "check_key", "CHUNK_BYTES"]
