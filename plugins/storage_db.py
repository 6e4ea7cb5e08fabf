"""`db` storage backend (the default): sealed objects in the storage_objects table.

Limited to STORAGE_DB_MAX_BYTES per object (default 16 MiB): PostgreSQL is not an object
store, and a bytea this size is read into memory whole.
"""
from __future__ import annotations

from typing import Iterator

from scaivault.plugins import hookimpl
from scaivault.storage import CHUNK_BYTES, ObjectNotFound, ObjectTooLarge, StorageBackend, as_stream


class DatabaseStorage(StorageBackend):
    name = "db"

    def __init__(self, db, max_bytes: int):
        self.db = db
        self.max_bytes = max_bytes

    def put(self, key: str, data) -> int:
        stream = as_stream(data)
        chunks, size = [], 0
        while True:
            chunk = stream.read(CHUNK_BYTES)
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_bytes:
                raise ObjectTooLarge(message=f"object exceeds STORAGE_DB_MAX_BYTES ({self.max_bytes} bytes); "
                                             f"configure an object store (STORAGE_PROVIDER=s3, gcs or azure_blob)",
                                     details={"max_bytes": self.max_bytes})
            chunks.append(chunk)
        self.db.execute("INSERT INTO storage_objects (key, data, size) VALUES (:k, :d, :n) "
                        "ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, size = EXCLUDED.size, updated_at = now()",
                        k=key, d=b"".join(chunks), n=size)
        return size

    def open(self, key: str) -> Iterator[bytes]:
        row = self.db.one("SELECT data FROM storage_objects WHERE key = :k", k=key)
        if row is None:
            raise ObjectNotFound(message="no such object", details={"key": key})
        data = bytes(row["data"])
        return iter([data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""])

    def delete(self, key: str) -> bool:
        return self.db.execute("DELETE FROM storage_objects WHERE key = :k", k=key) == 1

    def exists(self, key: str) -> bool:
        return self.db.scalar("SELECT EXISTS (SELECT 1 FROM storage_objects WHERE key = :k)", k=key)


def create(settings, runtime) -> DatabaseStorage:
    return DatabaseStorage(runtime.db, settings.storage_db_max_bytes)


@hookimpl
def scaivault_storage_backends():
    return {"db": create}
