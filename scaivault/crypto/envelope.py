"""The versioned envelope of a sealed value, and AES-256-GCM sealing with a fresh data key.

Layout (format 1, 96 bytes of overhead):

    b"SV" | format u8 (=1) | algorithm u8 (=1: AES-256-GCM payload, AES-256-GCM key wrap)
    | tenant key version u32 | wrapped data key: nonce(12) ct(32) tag(16) | nonce(12) | payload ct+tag

The header up to the wrapped data key is authenticated as part of the data-key AAD, so
the tenant key version cannot be altered; the payload AAD binds the full SealContext.
"""
from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .context import SealContext, data_key_aad, payload_aad
from .errors import SealError

MAGIC = b"SV"
FORMAT_V1 = 1
ALG_AES256GCM = 1
HEADER = struct.Struct(">2sBBI")          # magic, format, algorithm, tenant key version
NONCE_BYTES = 12
KEY_BYTES = 32
TAG_BYTES = 16
WRAPPED_DK_BYTES = NONCE_BYTES + KEY_BYTES + TAG_BYTES
OVERHEAD = HEADER.size + WRAPPED_DK_BYTES + NONCE_BYTES + TAG_BYTES
ENVELOPE_BYTES = HEADER.size + WRAPPED_DK_BYTES      # the part a detached value keeps in its row
_PREFIX = MAGIC + bytes((FORMAT_V1, ALG_AES256GCM))


def new_key() -> bytes:
    """A fresh 256-bit key from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def gcm_encrypt(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    """nonce || ciphertext || tag with a random 96-bit nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def gcm_decrypt(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise SealError()
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise SealError() from None


def tenant_key_version_of(sealed: bytes) -> int:
    """The tenant key version named in a sealed value's header (SealError if malformed)."""
    if not isinstance(sealed, (bytes, bytearray, memoryview)) or len(sealed) < ENVELOPE_BYTES:
        raise SealError("not a sealed value (too short)")
    magic, fmt, alg, version = HEADER.unpack_from(sealed, 0)
    if magic != MAGIC:
        raise SealError("not a sealed value")
    if fmt != FORMAT_V1 or alg != ALG_AES256GCM:
        raise SealError(f"unsupported envelope format {fmt}/{alg}")
    return version


def seal_with(tenant_aead: AESGCM, key_version: int, ctx: SealContext, plaintext: bytes) -> bytes:
    """Seal `plaintext` under a fresh data key wrapped by the tenant key."""
    header = HEADER.pack(MAGIC, FORMAT_V1, ALG_AES256GCM, key_version)
    data_key = new_key()
    wrapped = gcm_encrypt(tenant_aead, data_key, data_key_aad(header, ctx.partner_id, ctx.tenant_id))
    body = gcm_encrypt(AESGCM(data_key), bytes(plaintext), payload_aad(_PREFIX, ctx))
    return header + wrapped + body


def split(sealed: bytes) -> tuple[bytes, bytes]:
    """(envelope, body): the envelope stays in the database row, the body may go to object storage."""
    return sealed[:ENVELOPE_BYTES], sealed[ENVELOPE_BYTES:]


def open_with(tenant_aead: AESGCM, ctx: SealContext, sealed: bytes) -> bytes:
    """Open a sealed value with the tenant key its header names (the caller picked it)."""
    sealed = bytes(sealed)
    header = sealed[:HEADER.size]
    wrapped = sealed[HEADER.size:HEADER.size + WRAPPED_DK_BYTES]
    data_key = gcm_decrypt(tenant_aead, wrapped, data_key_aad(header, ctx.partner_id, ctx.tenant_id))
    return gcm_decrypt(AESGCM(data_key), sealed[HEADER.size + WRAPPED_DK_BYTES:], payload_aad(_PREFIX, ctx))


def rewrap_with(old_aead: AESGCM, new_aead: AESGCM, new_version: int, partner_id: str,
                tenant_id: str | None, sealed: bytes) -> bytes:
    """The same payload with its data key re-wrapped under another tenant key version."""
    sealed = bytes(sealed)
    header = sealed[:HEADER.size]
    wrapped = sealed[HEADER.size:HEADER.size + WRAPPED_DK_BYTES]
    data_key = gcm_decrypt(old_aead, wrapped, data_key_aad(header, partner_id, tenant_id))
    new_header = HEADER.pack(MAGIC, FORMAT_V1, ALG_AES256GCM, new_version)
    new_wrapped = gcm_encrypt(new_aead, data_key, data_key_aad(new_header, partner_id, tenant_id))
    return new_header + new_wrapped + sealed[HEADER.size + WRAPPED_DK_BYTES:]
