"""One error hierarchy; scaivault.app turns every ScaiVaultError into the spec/10 envelope.

Raise `ScaiVaultError(code, message, status=..., details=...)` or one of the named
subclasses. Messages are for humans and never contain secret values or tokens.
"""
from __future__ import annotations

from typing import Any

# code -> HTTP status for every code the API emits (spec/10 section 7.2 plus decisions).
STATUS_BY_CODE: dict[str, int] = {
    # 400
    "invalid_request": 400, "invalid_path": 400, "invalid_secret_type": 400,
    "invalid_duration": 400, "invalid_cursor": 400, "invalid_policy": 400,
    "invalid_glob": 400, "invalid_role": 400, "invalid_config": 400,
    "invalid_signature": 401,
    # 401
    "authentication_required": 401, "token_expired": 401, "token_invalid": 401,
    "token_revoked": 401,
    # 403
    "access_denied": 403, "insufficient_scope": 403, "mfa_required": 403,
    "ip_not_allowed": 403, "time_window_violation": 403, "tenant_access_denied": 403,
    "forbidden": 403,
    # 404
    "not_found": 404, "secret_not_found": 404, "version_not_found": 404,
    "policy_not_found": 404, "binding_not_found": 404, "rotation_policy_not_found": 404,
    "secret_policy_not_found": 404, "tenant_not_found": 404,
    "identity_not_found": 404, "token_not_found": 404, "export_not_found": 404,
    "engine_not_found": 404, "role_not_found": 404, "lease_not_found": 404, "trust_rule_not_found": 404,
    "lease_expired": 410,
    # 405 / 409 / 410 / 413 / 415 / 422 / 429
    "method_not_allowed": 405,
    "secret_exists": 409, "version_conflict": 409, "policy_in_use": 409, "conflict": 409,
    "secret_expired": 410, "version_destroyed": 410,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "rate_limited": 429,
    # 5xx
    "internal_error": 500,
    "service_unavailable": 503,
    "kms_unavailable": 503,
    "kms_error": 503, "kms_wrong_key": 503,        # the KMS refused; see readiness `encryption`
    "decryption_failed": 500,                     # a sealed value failed authentication (moved/tampered)
    "storage_unavailable": 503, "object_not_found": 404, "object_too_large": 413,
    "rotation_in_progress": 409,
    "tenant_partner_unknown": 409,               # issue 9 F2: never seal under a guessed partner
    "audit_unavailable": 503,
    # federation (spec/50 section 3)
    "federation_backend_not_found": 404, "federated_path_read_only": 409, "federation_unavailable": 503,
    # lifecycle (issue 11)
    "invalid_webhook_url": 400, "webhook_not_found": 404, "subscription_not_found": 404,
    "delivery_not_found": 404, "secret_policy_in_use": 409,
    # PKI and ACME (issue 12)
    "certificate_not_allowed": 400, "ca_not_found": 404, "certificate_not_found": 404,
    "acme_account_not_found": 404, "acme_order_not_found": 404, "dns_provider_not_found": 404,
    "ca_not_ready": 409, "ca_revoked": 409, "acme_error": 502,
    "hsm_not_configured": 400,                    # key_storage hsm without KMS_PROVIDER=pkcs11
}


class ScaiVaultError(Exception):
    """Base of every error the API reports; carries code, HTTP status, message and details."""

    code = "internal_error"

    def __init__(self, code: str | None = None, message: str = "", *, status: int | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        self.code = code or self.code
        self.status = status or STATUS_BY_CODE.get(self.code, 500)
        self.message = message or self.code.replace("_", " ")
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{self.code}: {self.message}")


class InvalidRequest(ScaiVaultError):
    code = "invalid_request"

    def __init__(self, message: str = "malformed request", **kw: Any):
        super().__init__(self.code, message, **kw)


class ValidationFailed(ScaiVaultError):
    """422 with the failing fields in details.fields."""

    code = "validation_error"

    def __init__(self, fields: dict[str, str], message: str = "request validation failed"):
        super().__init__(self.code, message, details={"fields": fields})


class NotFound(ScaiVaultError):
    code = "not_found"


class Forbidden(ScaiVaultError):
    code = "forbidden"


class Unauthenticated(ScaiVaultError):
    code = "authentication_required"


class Conflict(ScaiVaultError):
    code = "conflict"


class ServiceUnavailable(ScaiVaultError):
    code = "service_unavailable"
