"""What every storage backend must do; each tests/test_storage_<name>.py runs these on a real server."""
from __future__ import annotations

import io
import os

import pytest

from scaivault.crypto import SealContext
from scaivault.errors import ScaiVaultError
from scaivault.storage import ObjectNotFound, SealedObjectStore

CTX = SealContext("ptn_store", "tnt_store", "artifact", "crl/ca-1", 1)


def check_put_get_delete_exists(store: SealedObjectStore, keyring) -> None:
    sealed = keyring.seal(CTX, b"certificate revocation list")
    assert not store.exists("crl/ca-1")
    assert store.put("crl/ca-1", sealed) == len(sealed)
    assert store.exists("crl/ca-1")
    assert store.get("crl/ca-1") == sealed
    assert keyring.open(CTX, store.get("crl/ca-1")) == b"certificate revocation list"
    store.put("crl/ca-1", keyring.seal(CTX, b"replaced"))
    assert store.get_opened(CTX, "crl/ca-1") == b"replaced"
    assert store.delete("crl/ca-1") is True
    assert not store.exists("crl/ca-1")
    assert store.delete("crl/ca-1") is False
    with pytest.raises(ObjectNotFound) as info:
        store.get("crl/ca-1")
    assert info.value.status == 404


def check_large_objects_stream(store: SealedObjectStore, keyring, size: int = 12 * 1024 * 1024) -> None:
    big = os.urandom(size)
    sealed = keyring.seal(CTX, big)
    chunks = (sealed[i:i + 1024 * 1024] for i in range(0, len(sealed), 1024 * 1024))
    assert store.put("exports/big.bin", chunks) == len(sealed)
    received = list(store.open("exports/big.bin"))
    assert len(received) > 1                             # streamed in chunks, not one buffer
    assert keyring.open(CTX, b"".join(received)) == big
    assert store.put("exports/big2.bin", io.BytesIO(sealed)) == len(sealed)
    assert store.get("exports/big2.bin") == sealed
    store.delete("exports/big.bin")
    store.delete("exports/big2.bin")


def check_only_sealed_values_are_accepted(store: SealedObjectStore) -> None:
    with pytest.raises(ScaiVaultError) as info:
        store.put("plain.txt", b"a plaintext secret")
    assert info.value.code == "invalid_request"
    assert not store.exists("plain.txt")


def check_bad_keys_are_refused(store: SealedObjectStore, keyring) -> None:
    for bad in ("../escape", "/abs", "a//b", "", "x" * 600, "sp ace"):
        with pytest.raises(ScaiVaultError) as info:
            store.put(bad, keyring.seal(CTX, b"v"))
        assert info.value.code == "invalid_request"


def check_detached_values_keep_the_envelope_in_the_row(store: SealedObjectStore, keyring) -> None:
    envelope = store.put_detached(CTX, "certs/chain.pem", b"-----BEGIN CERTIFICATE-----")
    assert len(envelope) == 68
    body = store.get("certs/chain.pem")
    assert b"BEGIN CERTIFICATE" not in body
    assert store.get_detached(CTX, "certs/chain.pem", envelope) == b"-----BEGIN CERTIFICATE-----"
    other = SealContext("ptn_store", "tnt_store", "artifact", "certs/other.pem", 1)
    from scaivault.crypto import SealError

    with pytest.raises(SealError):
        store.get_detached(other, "certs/chain.pem", envelope)
    store.delete("certs/chain.pem")
