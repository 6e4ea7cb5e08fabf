"""The version each secret was last seen at, shared by the workers of one server (issue 10).

A plain write is one statement sealed for "the version after the one I last saw"
(services/secrets.py `_write_one_statement`); when another worker wrote the path since, the
statement writes nothing and the write is resealed and sent again. Kept per process, that hint
was stale for about half the writes of two workers writing the same paths. Kept in one anonymous
shared mapping made by the master before it forks (`share_between_workers`), every worker of the
instance sees the others' writes and reads.

A hint is only ever a guess: the statement checks the version under the row lock, so a wrong,
missing or torn slot (two processes writing one slot at once, a hash collision) costs one more
statement, never a wrong version. Each slot holds a 64-bit hash of (partner, tenant, path) and
the version; 65,536 slots (1 MiB).
"""
from __future__ import annotations

import hashlib
import mmap
import struct

SLOTS = 1 << 16
_SLOT = struct.Struct("<QQ")     # key hash, version


def _hash(key: tuple[str | None, str | None, str]) -> int:
    partner, tenant, path = key
    digest = hashlib.blake2b(f"{partner}\x00{tenant}\x00{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1       # never 0: a zeroed slot holds nothing


class VersionHints:
    """`get(key)` -> the last version noted for key, or 0 (unknown); `note(key, version)`."""

    def __init__(self) -> None:
        # anonymous and MAP_SHARED: processes forked after this share the pages
        self._map = mmap.mmap(-1, SLOTS * _SLOT.size)

    def get(self, key: tuple[str | None, str | None, str]) -> int:
        h = _hash(key)
        stored, version = _SLOT.unpack_from(self._map, (h % SLOTS) * _SLOT.size)
        return version if stored == h else 0

    def note(self, key: tuple[str | None, str | None, str], version: int) -> None:
        h = _hash(key)
        _SLOT.pack_into(self._map, (h % SLOTS) * _SLOT.size, h, version)


_shared: VersionHints | None = None


def share_between_workers() -> None:
    """Called by the master before it forks its workers: they all use one table."""
    global _shared
    if _shared is None:
        _shared = VersionHints()


def for_process() -> VersionHints:
    """The server's shared table, or (tests, tools, a single process) one of this process's own."""
    return _shared if _shared is not None else VersionHints()
