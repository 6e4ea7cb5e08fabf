"""Exceptions of the ScaiVault SDK: one per kind of answer, each carrying the server's
`code`, HTTP `status`, `message`, `request_id` and `details` (spec/10 error envelope)."""
from __future__ import annotations

from typing import Any


class ScaiVaultError(Exception):
    """Base of every SDK error. `code` is the API's error code (e.g. `secret_not_found`)."""

    def __init__(self, message: str, *, code: str = "error", status: int | None = None,
                 request_id: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.details = details or {}

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{where}"


class ConfigurationError(ScaiVaultError):
    """The client is missing a URL or credentials, or was given contradictory ones."""


class AuthenticationError(ScaiVaultError):
    """401: no token, or an expired, invalid or revoked one."""


class AuthorizationError(ScaiVaultError):
    """403: the token's scopes or the policies do not allow this (insufficient_scope, access_denied, ...)."""


class NotFoundError(ScaiVaultError):
    """404: no such secret, version, policy, token, ..."""


class ValidationError(ScaiVaultError):
    """400 or 422: the request was malformed or a field failed validation (see `details`)."""


class ConflictError(ScaiVaultError):
    """409: check-and-set mismatch, secret exists, policy in use, rotation in progress."""


class GoneError(ScaiVaultError):
    """410: the secret expired or the version was destroyed."""


class PayloadTooLargeError(ScaiVaultError):
    """413: the body or the secret value exceeds the server's limit."""


class RateLimitError(ScaiVaultError):
    """429 after the retries ran out; `retry_after` is the server's Retry-After in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(ScaiVaultError):
    """5xx other than 503 (e.g. 500 decryption_failed)."""


class ServiceUnavailableError(ServerError):
    """503 after the retries ran out: database, KMS, audit or ScaiKey unavailable."""


class ScaiVaultConnectionError(ScaiVaultError):
    """The server could not be reached or the connection broke.

    `maybe_applied` is True when a non-idempotent write was sent and no answer came back:
    it may or may not have taken effect, so the SDK did not repeat it.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False, **kw: Any):
        super().__init__(message, code=kw.pop("code", "connection_error"), **kw)
        self.maybe_applied = maybe_applied


_BY_STATUS: dict[int, type[ScaiVaultError]] = {
    400: ValidationError, 401: AuthenticationError, 403: AuthorizationError, 404: NotFoundError,
    409: ConflictError, 410: GoneError, 413: PayloadTooLargeError, 422: ValidationError,
    429: RateLimitError, 503: ServiceUnavailableError,
}


def error_for(status: int, body: Any, headers: Any) -> ScaiVaultError:
    """The exception for an error answer (the JSON envelope when there is one, else the status)."""
    envelope = body.get("error") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        envelope = {}
    code = str(envelope.get("code") or f"http_{status}")
    message = str(envelope.get("message") or f"HTTP {status}")
    request_id = envelope.get("request_id") or headers.get("X-Request-ID")
    details = envelope.get("details") if isinstance(envelope.get("details"), dict) else None
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ScaiVaultError)
    kw: dict[str, Any] = {"code": code, "status": status, "request_id": request_id, "details": details}
    if cls is RateLimitError:
        kw["retry_after"] = parse_retry_after(headers.get("Retry-After"))
    return cls(message, **kw)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are not sent by ScaiVault)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


__all__ = [
    "ScaiVaultError", "ConfigurationError", "AuthenticationError", "AuthorizationError", "NotFoundError",
    "ValidationError", "ConflictError", "GoneError", "PayloadTooLargeError", "RateLimitError", "ServerError",
    "ServiceUnavailableError", "ScaiVaultConnectionError", "error_for", "parse_retry_after",
]
