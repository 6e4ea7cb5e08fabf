"""SealContext and the canonical associated-data encodings every ciphertext is bound to."""
from __future__ import annotations

import struct
from dataclasses import dataclass

PARTNER_SCOPE = ""  # tenant_keys.tenant_id of a partner's own key (tenant ids are never empty)


@dataclass(frozen=True, slots=True)
class SealContext:
    """Where a sealed value lives; opening it anywhere else fails.

    tenant_id None means a partner-owned object (sealed under the partner's own key).
    """

    partner_id: str
    tenant_id: str | None
    kind: str
    object_id: str
    version: int

    def __post_init__(self) -> None:
        if not isinstance(self.partner_id, str) or not isinstance(self.kind, str) or not self.kind:
            raise TypeError("SealContext needs partner_id (str) and a non-empty kind")
        if self.tenant_id is not None and (not isinstance(self.tenant_id, str) or not self.tenant_id):
            raise TypeError("SealContext.tenant_id must be a non-empty str or None")
        if not isinstance(self.object_id, str) or not isinstance(self.version, int) or self.version < 0:
            raise TypeError("SealContext needs object_id (str) and version (int >= 0)")

    @property
    def key_scope(self) -> str:
        """The tenant_keys.tenant_id of the key that seals this context."""
        return self.tenant_id if self.tenant_id is not None else PARTNER_SCOPE


def _field(value: str | None) -> bytes:
    # A presence byte keeps None and "" apart; a length prefix keeps fields from sliding.
    if value is None:
        return b"\x00"
    raw = value.encode("utf-8")
    return b"\x01" + struct.pack(">I", len(raw)) + raw


def payload_aad(header_prefix: bytes, ctx: SealContext) -> bytes:
    """AAD of the payload: envelope format + the full context (not the tenant key version,
    so a tenant-key rotation can re-wrap the data key without touching the payload)."""
    return b"".join((b"scaivault/payload\x00", header_prefix, _field(ctx.partner_id), _field(ctx.tenant_id),
                     _field(ctx.kind), _field(ctx.object_id), struct.pack(">Q", ctx.version)))


def data_key_aad(header: bytes, partner_id: str, tenant_id: str | None) -> bytes:
    """AAD of a wrapped data key: the whole header (tenant key version included) + owner."""
    return b"".join((b"scaivault/data-key\x00", header, _field(partner_id), _field(tenant_id)))


def tenant_key_aad(partner_id: str, scope: str, version: int) -> bytes:
    return b"".join((b"scaivault/tenant-key\x00", _field(partner_id), _field(scope), struct.pack(">I", version)))


def partner_key_aad(partner_id: str) -> bytes:
    return b"scaivault/partner-key\x00" + _field(partner_id)


ROOT_CHECK_AAD = b"scaivault/root-check\x00v1"
