"""Dynamic-secret engines: the plugin interface (hook `scaivault_dynamic_engines`) and its errors.

A database engine plugin registers {plugin_name: factory(runtime, config) -> DatabaseEngine}.
`config` holds the connection URL with the root credentials already filled in, plus the
root `username` and `password`. The engine opens connections; ScaiVault's services decide
what runs, render the statements (scaivault.dynamic.templates) and keep the leases.
"""
from __future__ import annotations

from typing import Any, Protocol

from .templates import MYSQL, POSTGRES, Dialect

HOOK = "scaivault_dynamic_engines"


class EngineError(Exception):
    """The target database refused or could not be reached; `reason` is the driver's words,
    which the plugin makes sure never contain the password."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class EngineConnection(Protocol):
    def execute(self, statements: list[str]) -> None:
        """Run rendered statements in order, in one transaction where the database allows."""

    def close(self) -> None: ...


class DriverConnection:
    """A convenient base for plugins' connections: wraps the driver's, closes without raising."""

    def __init__(self, conn):
        self.conn = conn

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass      # closing a broken connection must not hide the error being reported


class DatabaseEngine(Protocol):
    dialect: Dialect
    default_revocation_statements: list[str]
    default_renew_statements: list[str]
    root_rotation_statements: list[str]

    def connect(self) -> EngineConnection:
        """A connection with the root credentials (bounded connect and statement timeouts)."""


def build_engine(runtime, plugin: str, config: dict[str, Any]) -> DatabaseEngine:
    """The engine of the installed plugin `plugin`; ConfigError lists the installed names."""
    from ..plugins import select

    return select(HOOK, plugin, getattr(runtime, "plugins", None)).factory(runtime, config)


def installed_plugins(runtime=None) -> list[str]:
    from ..plugins import registrations

    return sorted(registrations(HOOK, getattr(runtime, "plugins", None)))


__all__ = ["EngineError", "EngineConnection", "DriverConnection", "DatabaseEngine", "Dialect", "POSTGRES", "MYSQL",
           "build_engine", "installed_plugins"]
