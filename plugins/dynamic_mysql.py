"""`mysql` and `mariadb` dynamic-secrets engines: one account per lease, over PyMySQL.

MySQL and MariaDB commit DDL implicitly (CREATE USER, GRANT), so statements run in order
without a surrounding transaction; a failure part-way is cleaned up by the revocation
statements, which ScaiVault runs (and retries) for every credential it started to create.
Install with the `mysql` extra (PyMySQL).
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from scaivault.dynamic import MYSQL, DriverConnection, EngineError
from scaivault.plugins import hookimpl

CONNECT_TIMEOUT_SECONDS = 10
STATEMENT_TIMEOUT_SECONDS = 30


def _reason(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return f"{args[0]}: {args[1]}"          # (errno, server message): names no password
    return type(exc).__name__


class MySqlConnection(DriverConnection):
    def execute(self, statements: list[str]) -> None:
        import pymysql

        try:
            with self.conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
            self.conn.commit()
        except (pymysql.MySQLError, OSError) as exc:
            raise EngineError(_reason(exc)) from None


class MySqlEngine:
    dialect = MYSQL
    default_revocation_statements = ["DROP USER IF EXISTS {{name}}@'%'"]
    default_renew_statements: list[str] = []      # MySQL accounts carry no expiry of their own
    root_rotation_statements = ["ALTER USER CURRENT_USER() IDENTIFIED BY {{password}}"]

    def __init__(self, runtime, config: dict[str, Any]):
        try:
            parts = urlsplit(config["connection_url"])
            port = parts.port or 3306
        except ValueError:
            raise EngineError("connection_url is not a valid URL") from None
        if parts.scheme not in ("mysql", "mariadb"):
            raise EngineError("connection_url must start with mysql:// or mariadb://")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.params = dict(host=parts.hostname or "127.0.0.1", port=port,
                           user=unquote(parts.username or ""), password=unquote(parts.password or ""),
                           database=unquote(parts.path.lstrip("/")) or None,
                           unix_socket=query.get("unix_socket"))

    def connect(self) -> MySqlConnection:
        try:
            import pymysql
        except ImportError:
            raise EngineError("the mysql engine needs PyMySQL: pip install 'scaivault[mysql]'") from None
        try:
            conn = pymysql.connect(**self.params, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                                   read_timeout=STATEMENT_TIMEOUT_SECONDS, write_timeout=STATEMENT_TIMEOUT_SECONDS,
                                   autocommit=False, charset="utf8mb4")
        except (pymysql.MySQLError, OSError) as exc:
            raise EngineError(_reason(exc)) from None
        return MySqlConnection(conn)


class MariaDbEngine(MySqlEngine):
    # MariaDB 10.11 accepts ALTER USER CURRENT_USER() ... and changes nothing; SET PASSWORD works
    root_rotation_statements = ["SET PASSWORD = PASSWORD({{password}})"]


@hookimpl
def scaivault_dynamic_engines():
    return {"mysql": MySqlEngine, "mariadb": MariaDbEngine}
