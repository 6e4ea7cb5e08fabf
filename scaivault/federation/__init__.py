"""Federation: ScaiVault in front of an external secret store (spec/50 section 3).

A backend type is a plugin (hook `scaivault_federation_backends`) returning a factory
`factory(config: dict, credentials: dict, timeout: float) -> FederationBackend`. `proxy`
mode reads the backend live on every read of a mapped path and keeps nothing; `sync` mode
copies values in (import) or out (export) on a schedule, sealed like any secret.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from ..errors import ScaiVaultError

BACKEND_TYPES = ("hashicorp-vault", "aws-secrets-manager", "azure-key-vault", "google-secret-manager")


class FederationUnavailable(ScaiVaultError):
    """The backend did not answer within its timeout, or answered with an error of its own."""

    code = "federation_unavailable"

    def __init__(self, message: str = "the federated backend is unavailable", **kw):
        super().__init__(self.code, message, **kw)


class RemoteNotFound(Exception):
    """The backend has no secret at that path."""


@dataclass(frozen=True)
class RemoteSecret:
    """A secret as a backend holds it: the JSON object, and the backend's own version id."""

    data: dict
    version: str
    metadata: dict = field(default_factory=dict)


class FederationBackend(Protocol):
    """One configured external store. Every call is bounded by the backend's timeout and raises
    FederationUnavailable when the store cannot be reached; none ever returns a credential."""

    def check(self) -> None:
        """A test call at creation (and for status): raises FederationUnavailable with a reason."""

    def read(self, remote_path: str) -> RemoteSecret:
        """The current value at `remote_path`; RemoteNotFound when there is none."""

    def list(self, remote_prefix: str) -> Iterable[str]:
        """Every secret path under `remote_prefix` (recursively), as full remote paths."""

    def write(self, remote_path: str, data: dict) -> str:
        """Store `data` as the new value; returns the backend's new version id."""

    def delete(self, remote_path: str) -> None:
        """Remove the secret (as the backend deletes: soft where it has soft delete)."""

    def close(self) -> None:
        """Release connections."""
