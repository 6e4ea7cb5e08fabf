"""Where sealed values live, so a tenant-key rotation can re-wrap their data keys.

A service owning a table with a sealed bytea column registers it once at import:

    register_sealed_column("secret_versions", "sealed_data", key_column="id")

Tenant-key rotation then re-wraps the data key of every row of that tenant (the payload
ciphertext is not rewritten). Columns not registered stay readable: old tenant key
versions are retired, never deleted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class SealedColumn:
    table: str
    column: str
    key_column: str = "id"
    tenant_column: str = "tenant_id"
    partner_column: str | None = "partner_id"     # used for partner-owned rows (tenant NULL)

    def __post_init__(self) -> None:
        for name in (self.table, self.column, self.key_column, self.tenant_column, self.partner_column or "x"):
            if not _IDENT.match(name):
                raise ValueError(f"not a plain SQL identifier: {name!r}")


_REGISTRY: dict[tuple[str, str], SealedColumn] = {}


def register_sealed_column(table: str, column: str, *, key_column: str = "id", tenant_column: str = "tenant_id",
                           partner_column: str | None = "partner_id") -> SealedColumn:
    entry = SealedColumn(table, column, key_column, tenant_column, partner_column)
    _REGISTRY[(table, column)] = entry
    return entry


def sealed_columns() -> list[SealedColumn]:
    return list(_REGISTRY.values())
