"""Errors of the key hierarchy: a value that will not open, and a KMS that will not answer."""
from __future__ import annotations

from ..errors import ScaiVaultError


class SealError(ScaiVaultError):
    """A sealed value failed authentication: tampered, truncated, or moved to another context."""

    code = "decryption_failed"

    def __init__(self, message: str = "the sealed value cannot be opened in this context", **kw):
        super().__init__(self.code, message, **kw)


class KmsError(ScaiVaultError):
    """The KMS refused or failed an operation (permission denied, disabled or missing key)."""

    code = "kms_error"

    def __init__(self, message: str = "the KMS refused the operation", **kw):
        super().__init__(self.code, message, **kw)


class KmsUnavailable(KmsError):
    """The KMS could not be reached (connection refused, timeout, 5xx)."""

    code = "kms_unavailable"


class KmsWrongKey(KmsError):
    """The KMS answered but the ciphertext does not belong to this key (wrong key or tampered)."""

    code = "kms_wrong_key"
