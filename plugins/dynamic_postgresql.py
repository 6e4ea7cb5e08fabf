"""`postgresql` dynamic-secrets engine: one database user per lease, over pg8000.

Statements of one operation run in one transaction (PostgreSQL has transactional DDL), so a
role is either fully created and granted or not at all.
"""
from __future__ import annotations

from typing import Any

from pg8000.exceptions import DatabaseError, InterfaceError

from scaivault.config import ConfigError, DatabaseURL
from scaivault.db import DatabaseUnavailable, _reason, connect
from scaivault.dynamic import POSTGRES, DriverConnection, EngineError
from scaivault.plugins import hookimpl

CONNECT_TIMEOUT_SECONDS = 10.0


class PostgresConnection(DriverConnection):
    def execute(self, statements: list[str]) -> None:
        try:
            self.conn.run("BEGIN")
            for statement in statements:
                self.conn.run(statement)
            self.conn.run("COMMIT")
        except (DatabaseError, InterfaceError, OSError) as exc:
            try:
                self.conn.run("ROLLBACK")
            except Exception:
                pass
            raise EngineError(_reason(exc)) from None


class PostgresEngine:
    dialect = POSTGRES
    # REVOKE first: a role that still holds privileges cannot be dropped
    default_revocation_statements = [
        'REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM {{name}}',
        'DROP ROLE IF EXISTS {{name}}',
    ]
    default_renew_statements = ["ALTER ROLE {{name}} VALID UNTIL {{expiration}}"]
    root_rotation_statements = ["ALTER ROLE CURRENT_USER WITH PASSWORD {{password}}"]

    def __init__(self, runtime, config: dict[str, Any]):
        try:
            self.url = DatabaseURL.parse("connection_url", config["connection_url"])
        except ConfigError as exc:
            raise EngineError(exc.problem) from None

    def connect(self) -> PostgresConnection:
        try:
            conn = connect(self.url, timeout=CONNECT_TIMEOUT_SECONDS, application_name="scaivault-dynamic")
        except DatabaseUnavailable as exc:
            raise EngineError(exc.reason) from None
        return PostgresConnection(conn)


@hookimpl
def scaivault_dynamic_engines():
    return {"postgresql": PostgresEngine}
