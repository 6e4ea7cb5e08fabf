"""ScaiVault Python SDK: `ScaiVaultClient` (async) and `SyncScaiVaultClient` with the same methods."""
from __future__ import annotations

__version__ = "0.1.0"

from .calls import RetryPolicy  # noqa: E402
from .client import ScaiVaultClient, SyncScaiVaultClient  # noqa: E402
from .errors import (AuthenticationError, AuthorizationError, ConflictError, NotFoundError,  # noqa: E402
                     RateLimitError, ScaiVaultConnectionError, ScaiVaultError, ServiceUnavailableError,
                     ValidationError)
from .models import Secret, SecretMetadata, SecretType  # noqa: E402

__all__ = ["ScaiVaultClient", "SyncScaiVaultClient", "RetryPolicy", "ScaiVaultError", "AuthenticationError",
           "AuthorizationError", "NotFoundError", "ValidationError", "ConflictError", "RateLimitError",
           "ServiceUnavailableError", "ScaiVaultConnectionError", "Secret", "SecretMetadata", "SecretType"]
