"""Migration importers (issue 14): move secrets from HashiCorp Vault / OpenBao KV v2, AWS Secrets
Manager and `.env` files into a running ScaiVault over its API (through scaivault_sdk).

A source lists `Entry`s (a ScaiVault destination path and a loader of the source secret); the
`Importer` walks them a page at a time: one batch read of the page's current ScaiVault values, then
per secret a decision (unchanged, write these versions, patch metadata, or skip a conflict) and
writes with check-and-set. Nothing here imports Flask or the server stack.
"""
from __future__ import annotations

from .engine import Entry, Importer, Outcome, SourceError, SourceSecret, Summary

__all__ = ["Entry", "Importer", "Outcome", "SourceError", "SourceSecret", "Summary"]
