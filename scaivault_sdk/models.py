"""Typed views of the API's answers. Unknown fields are kept (`extra="allow"`), so a newer
server never breaks an older SDK."""
from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class SecretType(str, Enum):
    KV = "kv"
    JSON = "json"
    CERTIFICATE = "certificate"
    SSH_KEY = "ssh_key"
    API_KEY = "api_key"


class SecretMetadata(Model):
    """The free-form metadata of a secret: description, tags, owner and any custom keys."""

    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    owner: str | None = None


class SecretSummary(Model):
    """One item of a listing."""

    path: str
    secret_type: SecretType | str = Field(union_mode="left_to_right")   # a newer server's type stays a str
    version: int
    metadata: SecretMetadata = Field(default_factory=SecretMetadata)
    created_at: str | None = None
    updated_at: str | None = None
    expires_at: str | None = None


class SecretInfo(SecretSummary):
    """A secret's state without its value (the answer to writes, metadata updates and restores)."""

    rotation_policy_id: str | None = None
    max_versions: int | None = None
    last_accessed_at: str | None = None
    deleted_at: str | None = None
    recoverable_until: str | None = None


class Secret(SecretInfo):
    """A secret read with its value in `data`."""

    data: dict[str, Any]
    current_version: int | None = None
    version_created_at: str | None = None


class SecretDetail(SecretInfo):
    """`read_metadata`: version count, rotation link and state, never the value."""

    version_count: int = 0
    readable_versions: int = 0
    rotation: dict[str, Any] = Field(default_factory=dict)
    expired: bool = False
    deleted: bool = False


class SecretPage(Model):
    secrets: list[SecretSummary]
    folders: list[str] | None = None
    cursor: str | None = None
    has_more: bool = False


class SecretVersion(Model):
    version: int
    created_at: str
    created_by: str | None = None
    size_bytes: int = 0
    state: str = "active"
    current: bool = False
    destroyed_at: str | None = None


class VersionList(Model):
    path: str
    current_version: int
    max_versions: int
    deleted: bool = False
    recoverable_until: str | None = None
    versions: list[SecretVersion]


class DeleteResult(Model):
    path: str
    permanent: bool
    version_count: int
    deleted_at: str
    recoverable_until: str | None = None


class DestroyResult(Model):
    path: str
    destroyed: list[int]
    already_destroyed: list[int]


class BatchError(Model):
    code: str
    message: str


class BatchReadResult(Model):
    """`.secrets` maps each readable path to its secret; `.errors` maps the others to why not."""

    secrets: dict[str, Secret]
    errors: dict[str, BatchError] = Field(default_factory=dict)


class PolicyRule(Model):
    path_pattern: str
    permissions: list[str]
    effect: str | None = None
    conditions: dict[str, Any] | None = None
    description: str | None = None


class PolicyBinding(Model):
    id: str
    policy_id: str
    identity_type: str
    identity_id: str
    expires_at: str | None = None
    created_at: str | None = None
    created_by: str | None = None


class Policy(Model):
    id: str
    name: str
    description: str | None = ""
    scope: str = "tenant"
    rules: list[PolicyRule] = Field(default_factory=list)
    is_active: bool = True
    tenant_id: str | None = None
    partner_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    bindings: list[PolicyBinding] | None = None


class PolicySummary(Model):
    id: str
    name: str
    description: str | None = ""
    scope: str = "tenant"
    rule_count: int = 0
    binding_count: int = 0
    is_active: bool = True
    created_at: str | None = None
    updated_at: str | None = None


class PolicyPage(Model):
    policies: list[PolicySummary]
    cursor: str | None = None
    has_more: bool = False


class PolicyTestResult(Model):
    allowed: bool
    identity_id: str
    path: str
    permission: str
    code: str | None = None
    decision: dict[str, Any] = Field(default_factory=dict)
    evaluated_policies: list[dict[str, Any]] = Field(default_factory=list)


class Deleted(Model):
    id: str
    deleted: bool


class Whoami(Model):
    identity_id: str
    identity_type: str
    display_name: str | None = None
    tenant_id: str | None = None
    partner_id: str | None = None
    scopes: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    mfa_verified_at: str | None = None
    token_expires_at: str | None = None


class Token(Model):
    """A personal access token as listed (never its value)."""

    id: str
    name: str
    scopes: list[str]
    status: str
    created_at: str
    expires_at: str
    revoked_at: str | None = None
    last_used_at: str | None = None


class CreatedToken(Token):
    token: str = Field(description="the skt_ value; shown only once")


class AuditEntry(Model):
    id: str
    timestamp: str
    tenant_id: str | None = None
    action: str
    identity_type: str | None = None
    identity_id: str | None = None
    secret_path: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    success: bool
    duration_ms: int | None = None
    request_id: str | None = None
    extra_data: dict[str, Any] = Field(default_factory=dict)


class AuditPage(Model):
    logs: list[AuditEntry]
    cursor: str | None = None
    has_more: bool = False


class AuditExport(Model):
    export_id: str
    status: str
    format: str | None = None
    estimated_records: int = 0
    records_written: int = 0
    filters: dict[str, Any] | None = None
    destination: dict[str, Any] | None = None
    requested_by: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    manifest: list[dict[str, Any]] | None = Field(default=None, description="the files, once completed")


class DynamicEngine(Model):
    name: str
    type: str = "database"
    config: dict[str, Any] = Field(default_factory=dict)
    default_ttl: int | str | None = None
    max_ttl: int | str | None = None
    health: str | None = None
    root_rotated_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class DynamicRole(Model):
    engine: str
    name: str
    creation_statements: list[str] = Field(default_factory=list)
    revocation_statements: list[str] | None = None
    renew_statements: list[str] | None = None
    default_ttl: int | str | None = None
    max_ttl: int | str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class DynamicCredentials(Model):
    """A generated credential: `data` holds username and password; keep `lease_id` to renew or revoke."""

    lease_id: str
    lease_duration: int
    renewable: bool
    expires_at: str
    data: dict[str, Any]


class Lease(Model):
    lease_id: str
    engine: str
    role: str
    identity_id: str | None = None
    username: str | None = None
    state: str
    renewable: bool = False
    issued_at: str | None = None
    expires_at: str | None = None
    max_expires_at: str | None = None
    renewed_at: str | None = None
    ttl: int = 0
    revoked_at: str | None = None
    revoke_attempts: int = 0
    last_error: str | None = None
    next_attempt_at: str | None = None


class LeasePage(Model):
    leases: list[Lease]
    cursor: str | None = None
    has_more: bool = False


class CertificateAuthority(Model):
    id: str
    name: str
    common_name: str | None = None
    ca_type: str | None = None
    parent_ca_id: str | None = None
    key_type: str | None = None
    status: str | None = None
    serial_number: str | None = None
    valid_until: str | None = None
    certificates_issued: int = 0
    certificate_pem: str | None = None
    csr: str | None = None
    key_storage: str | None = None          # sealed | hsm
    hsm_key_label: str | None = None


class PkiRole(Model):
    name: str
    ca_id: str | None = None
    allowed_domains: list[str] = Field(default_factory=list)
    max_ttl: int | str | None = None


class IssuedCertificate(Model):
    """The answer to issue/sign: `private_key` only for issue, and only in this answer."""

    id: str
    serial_number: str
    certificate: str
    ca_chain: list[str] = Field(default_factory=list)
    expires_at: str | None = None
    secret_path: str | None = None
    private_key: str | None = None
    private_key_type: str | None = None


class CertificateRecord(Model):
    id: str
    ca_id: str | None = None
    role: str | None = None
    serial_number: str
    common_name: str | None = None
    dns_names: list[str] = Field(default_factory=list)
    not_after: str | None = None
    expires_at: str | None = None
    revoked: bool = False
    certificate: str | None = None


class CertificatePage(Model):
    certificates: list[CertificateRecord]
    cursor: str | None = None
    has_more: bool = False


class ExchangedToken(Model):
    """A ScaiVault token minted for a foreign workload token (GitHub Actions, Kubernetes)."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    issued_token_type: str | None = None
    scope: str = ""


class SecretPolicy(Model):
    """A value-generation recipe (fields with generators)."""

    id: str
    name: str
    description: str | None = None
    policy_type: str | None = None
    fields: list[dict[str, Any]] = Field(default_factory=list)
    is_active: bool = True


class RotationPolicy(Model):
    id: str
    name: str
    interval: str | None = None
    grace_period: str | None = None
    warn_before: str | None = None
    auto_generate: bool = False
    secret_policy_id: str | None = None
    webhook_ids: list[str] = Field(default_factory=list)
    is_active: bool = True
    secrets_count: int = 0


class DataPage(Model):
    """A page of the lifecycle listings (`data`, `cursor`, `has_more`)."""

    data: list[dict[str, Any]]
    cursor: str | None = None
    has_more: bool = False


class SecretPolicyPage(Model):
    """A page of `GET /v1/secret-policies` (`secret_policies`, `cursor`, `has_more`)."""

    secret_policies: list[dict[str, Any]]
    cursor: str | None = None
    has_more: bool = False


class Webhook(Model):
    id: str
    name: str
    url: str
    events: list[str] = Field(default_factory=list)
    filters: dict[str, Any] | None = None
    enabled: bool = True
    status: str | None = None


class WebhookPage(Model):
    webhooks: list[Webhook]
    cursor: str | None = None
    has_more: bool = False
