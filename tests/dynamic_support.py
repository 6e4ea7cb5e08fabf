"""Real target databases for the dynamic-credentials tests.

- PostgreSQL: a database of our own on the local server (127.0.0.1:5432), with a root role
  that has LOGIN CREATEROLE (not a superuser), dropped again at the end.
- MariaDB: a private `mariadbd` on a free port with its own datadir (never the system one).

The local PostgreSQL trusts TCP logins, so a password is never checked there: `pg_login_works`
checks the password against the role's stored SCRAM verifier as well as logging in.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pg8000.native

from tests.conftest import PG_HOST, PG_PORT, PG_USER
from tests.fakes.servers import Subprocess, free_port


def pg_admin(database: str = "postgres") -> pg8000.native.Connection:
    return pg8000.native.Connection(user=PG_USER, host=PG_HOST, port=PG_PORT, database=database)


class PostgresTarget:
    """A database and a root role for one test module."""

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.database = f"svdyn_{tag}"
        self.root_user = f"svroot_{tag}"
        self.root_password = "Root-" + secrets.token_urlsafe(12)
        conn = pg_admin()
        try:
            conn.run(f'CREATE DATABASE "{self.database}"')
            conn.run(f"CREATE ROLE \"{self.root_user}\" LOGIN CREATEROLE PASSWORD '{self.root_password}'")
        finally:
            conn.close()
        conn = pg_admin(self.database)
        try:
            conn.run("CREATE TABLE accounts (id int PRIMARY KEY, owner text)")
            conn.run("INSERT INTO accounts VALUES (1, 'alice'), (2, 'bob')")
            conn.run(f'GRANT ALL ON DATABASE "{self.database}" TO "{self.root_user}"')
            conn.run(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{self.root_user}" WITH GRANT OPTION')
            conn.run(f'GRANT USAGE, CREATE ON SCHEMA public TO "{self.root_user}"')
        finally:
            conn.close()

    @property
    def connection_url(self) -> str:
        return f"postgresql://{{{{username}}}}:{{{{password}}}}@{PG_HOST}:{PG_PORT}/{self.database}?sslmode=disable"

    def role_exists(self, name: str) -> bool:
        conn = pg_admin()
        try:
            return bool(conn.run("SELECT 1 FROM pg_roles WHERE rolname = :n", n=name))
        finally:
            conn.close()

    def login_works(self, user: str, password: str) -> bool:
        """The role exists, may log in, its password matches, and it can read the table."""
        if not scram_password_matches(user, password):
            return False
        try:
            conn = pg8000.native.Connection(user=user, password=password, host=PG_HOST, port=PG_PORT,
                                            database=self.database, timeout=10)
        except Exception:
            return False
        try:
            return len(conn.run("SELECT id FROM accounts")) == 2
        finally:
            conn.close()

    def drop(self, issued_roles=()) -> None:
        """Drop the database, the root role and any role the tests issued that is still there."""
        conn = pg_admin()
        try:
            conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=self.database)
            conn.run(f'DROP DATABASE IF EXISTS "{self.database}"')
            for name in issued_roles:
                conn.run(f'DROP ROLE IF EXISTS "{name}"')
            conn.run(f'DROP ROLE IF EXISTS "{self.root_user}"')
        finally:
            conn.close()


def scram_password_matches(role: str, password: str) -> bool:
    """Check `password` against the SCRAM-SHA-256 verifier PostgreSQL stores for `role`."""
    conn = pg_admin()
    try:
        rows = conn.run("SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = :n", n=role)
    finally:
        conn.close()
    if not rows or not rows[0][1] or not rows[0][0]:
        return False
    stored = rows[0][0]
    try:
        method, rest = stored.split("$", 1)
        iterations_salt, keys = rest.split("$", 1)
        iterations, salt = iterations_salt.split(":", 1)
        stored_key, _server_key = keys.split(":", 1)
    except ValueError:
        return False
    if method != "SCRAM-SHA-256":
        return False
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))


class TenantEnv:
    """An app, a fresh tenant and its admin caller (tenant_admin with `scopes`), for one test module."""

    def __init__(self, app, scaikey, scopes):
        from tests.secrets_support import Callers, new_tenant

        self.app = app
        self.client = app.test_client()
        self.callers = Callers(scaikey, self.client)
        self.tenant = new_tenant()
        self.admin = self.callers.user(f"admin@{self.tenant}.example", self.tenant, scopes=scopes, role="tenant_admin")
        self.runtime = app.extensions["scaivault"]


class MariaDBServer:
    """A private mariadbd (own datadir, free port, root with an empty password until set)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.port = free_port()
        self.root_password = ""

    def start(self) -> "MariaDBServer":
        install = shutil.which("mariadb-install-db")
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        subprocess.run([install, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        self.proc = Subprocess([server, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                                f"--port={self.port}", "--bind-address=127.0.0.1",
                                f"--socket={self.workdir / 'mysqld.sock'}", f"--pid-file={self.workdir / 'mysqld.pid'}",
                                "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--skip-log-bin",
                                "--innodb-log-file-size=8M"],
                               log=self.workdir / "server.log").start()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.connect().close()
                break
            except Exception:
                if time.monotonic() > deadline or self.proc.proc.poll() is not None:
                    raise RuntimeError("mariadbd did not start: " + (self.workdir / "server.log").read_text()[-2000:])
                time.sleep(0.2)
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.accounts (id int PRIMARY KEY, owner varchar(32))")
            cur.execute("INSERT INTO app.accounts VALUES (1, 'alice'), (2, 'bob')")
            self.root_user = "svroot"
            self.root_password = "Root-" + secrets.token_urlsafe(12)
            cur.execute(f"CREATE USER 'svroot'@'%' IDENTIFIED BY '{self.root_password}'")
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'svroot'@'%' WITH GRANT OPTION")
            conn.commit()
        return self

    def connect(self, user: str = "root", password: str = "", database: str | None = None):
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, database=database,
                               connect_timeout=5)

    @property
    def connection_url(self) -> str:
        return f"mysql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{self.port}/app"

    def login_works(self, user: str, password: str) -> bool:
        try:
            conn = self.connect(user, password, "app")
        except Exception:
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM accounts")
                return len(cur.fetchall()) == 2
        finally:
            conn.close()

    def login_works_root(self, password: str) -> bool:
        try:
            self.connect(self.root_user, password).close()
            return True
        except Exception:
            return False

    def user_exists(self, name: str) -> bool:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM mysql.user WHERE user = %s", (name,))
            return cur.fetchone()[0] > 0

    def stop(self) -> None:
        self.proc.stop()


PG_CREATION = [
    'CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' VALID UNTIL \'{{expiration}}\'',
    'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}"',
]
PG_REVOCATION = [
    'REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM "{{name}}"',
    'DROP ROLE IF EXISTS "{{name}}"',
]
MYSQL_CREATION = [
    "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'",
    "GRANT SELECT ON app.* TO '{{name}}'@'%'",
]
MYSQL_REVOCATION = ["DROP USER IF EXISTS '{{name}}'@'%'"]
