"""The audit log: fail-closed writer, hash chain, queries and exports (spec/30 section 7)."""
from __future__ import annotations

from .entry import ACTIONS, AuditEntry
from .writer import record, record_now

__all__ = ["ACTIONS", "AuditEntry", "record", "record_now"]
