"""`local` KMS provider: a 32-byte key in a file, AES-256-GCM key wrapping.

For development and single-node installs only: whoever reads the key file and the database
reads every secret. The file is created (mode 0600) when missing, with a warning.
"""
from __future__ import annotations

import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scaivault.config import ConfigError
from scaivault.crypto.errors import KmsUnavailable, KmsWrongKey
from scaivault.crypto.kms import KmsProvider, require_option
from scaivault.plugins import hookimpl

log = logging.getLogger("scaivault.kms.local")
FORMAT = b"L1"


class LocalKeyFile(KmsProvider):
    name = "local"

    def __init__(self, path: str, *, create: bool):
        super().__init__(os.path.abspath(path))
        self._aead = AESGCM(self._load(create))

    def _load(self, create: bool) -> bytes:
        path = self.key_ref
        if not os.path.exists(path):
            if not create:
                raise KmsUnavailable(f"local key file {path} does not exist")
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32))
            log.warning("created a new local root key file; back it up, and use a real KMS in production",
                        extra={"key_file": path})
        else:
            log.warning("using the local KMS provider: the root key sits in a file on this machine",
                        extra={"key_file": path})
        try:
            with open(path, "rb") as handle:
                key = handle.read()
        except OSError as exc:
            raise KmsUnavailable(f"cannot read local key file {path} ({exc.strerror})") from None
        if len(key) != 32:
            raise ConfigError("KMS_LOCAL_KEY_FILE", f"{path} must hold exactly 32 bytes, it holds {len(key)}")
        return key

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return FORMAT + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if wrapped[:2] != FORMAT or len(wrapped) < 2 + 12 + 16:
            raise KmsWrongKey("not a local-provider ciphertext")
        try:
            return self._aead.decrypt(wrapped[2:14], wrapped[14:], aad)
        except InvalidTag:
            raise KmsWrongKey("the local key cannot unwrap this value (wrong key or tampered)") from None


def create(settings, key_ref: str | None) -> LocalKeyFile:
    if key_ref is None:
        return LocalKeyFile(require_option(settings, "KMS_LOCAL_KEY_FILE", "KMS_KEY_ID"), create=True)
    # a key named by a stored record (secondary, or the key before a rotation) must already exist
    return LocalKeyFile(key_ref, create=key_ref == settings.kms_key_id_secondary)


@hookimpl
def scaivault_kms_providers():
    return {"local": create}
