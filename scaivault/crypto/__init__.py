"""The key hierarchy: seal/open any sensitive field under KMS root -> partner -> tenant -> data key.

    from scaivault.crypto import SealContext
    sealed = runtime.keyring.seal(SealContext(partner_id, tenant_id, "secret", path, version), data)
    data = runtime.keyring.open(SealContext(partner_id, tenant_id, "secret", path, version), sealed)
"""
from __future__ import annotations

from .context import SealContext
from .errors import KmsError, KmsUnavailable, KmsWrongKey, SealError
from .keyring import Keyring
from .kms import KmsProvider
from .sealed_columns import SealedColumn, register_sealed_column


def build_keyring(settings, db) -> Keyring:
    """The Keyring for `settings`, with the KMS provider selected by KMS_PROVIDER among the plugins."""
    from ..plugins import select

    registration = select("scaivault_kms_providers", settings.kms_provider)
    return Keyring(settings, db, registration.factory)


__all__ = ["SealContext", "SealError", "KmsError", "KmsUnavailable", "KmsWrongKey", "Keyring", "KmsProvider",
           "SealedColumn", "register_sealed_column", "build_keyring"]
