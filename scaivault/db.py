"""PostgreSQL access: a bounded pg8000 pool per process, transactions and read routing.

Usage (services never see connections directly):

    with db.transaction() as tx:            # BEGIN ... COMMIT (ROLLBACK on exception)
        row = tx.one("SELECT ... WHERE id = :id", id=x)
    rows = db.query("SELECT ...", **params)  # one autocommitted statement on the primary
    rows = db.read_query("SELECT ...")       # routed to DATABASE_URL_READ when set

Rows are dicts keyed by column name. The pool is created lazily in each process (so after
gunicorn forks), checks a connection that sat idle before handing it out, and replaces
connections that failed; a lost connection is never fatal to the process.
"""
from __future__ import annotations

import collections
import logging
import os
import select
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

import pg8000.converters
import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from . import patches
from .config import DatabaseURL
from .errors import ServiceUnavailable

log = logging.getLogger("scaivault.db")

patches.pg8000_statement_cache()

IDLE_CHECK_SECONDS = 30.0
CHECKOUT_TIMEOUT_SECONDS = 10.0


class DatabaseUnavailable(ServiceUnavailable):
    """The database could not be reached or refused the login (message names no password)."""

    def __init__(self, message: str = "database unavailable", reason: str = ""):
        super().__init__(message=message)
        self.reason = reason or message


def _reason(exc: BaseException) -> str:
    # pg8000 puts the server's ErrorResponse fields in a dict: M is the human message
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, dict):
        return str(arg.get("M") or arg.get("C") or type(exc).__name__)
    # pg8000 wraps socket errors ("Can't create a connection to host H and port P"): report
    # the underlying OSError, which names neither host nor port
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError):
            return cause.strerror or type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if isinstance(exc, InterfaceError) and text and "host" not in text:
        return text                       # e.g. "Server refuses SSL"
    return "connection failed" if isinstance(exc, InterfaceError) else type(exc).__name__


def connect(url: DatabaseURL, *, timeout: float = 30.0, application_name: str = "scaivault") -> pg8000.native.Connection:
    """Open one pg8000 native connection; `timeout` bounds the connect and every socket read.

    Failure raises DatabaseUnavailable naming the redacted URL and the reason.
    """
    ssl_context: ssl.SSLContext | bool | None = None
    if url.sslmode in ("require", "prefer") and url.unix_sock is None:
        # libpq semantics: encrypted, not verified (prefer falls back to plaintext below)
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    elif url.sslmode in ("verify-ca", "verify-full"):
        ssl_context = ssl.create_default_context(cafile=url.sslrootcert)
        ssl_context.check_hostname = url.sslmode == "verify-full"
    kwargs: dict[str, Any] = dict(
        user=url.user, password=url.password, database=url.database, timeout=timeout,
        application_name=application_name,
    )
    if url.unix_sock:
        kwargs["unix_sock"] = url.unix_sock
    else:
        kwargs.update(host=url.host, port=url.port, ssl_context=ssl_context)
    try:
        try:
            conn = pg8000.native.Connection(**kwargs)
        except InterfaceError as exc:
            if url.sslmode != "prefer" or "refuses SSL" not in str(exc):
                raise
            kwargs["ssl_context"] = None      # prefer: the server has no TLS, go on without
            conn = pg8000.native.Connection(**kwargs)
    except (OSError, InterfaceError, DatabaseError) as exc:
        reason = _reason(exc)
        raise DatabaseUnavailable(f"cannot connect to the database at {url.redacted}: {reason}", reason) from None
    conn.register_in_adapter(TIMESTAMPTZ_OID, _timestamptz_in)
    _no_delay(conn)
    return conn


def _no_delay(conn: pg8000.native.Connection) -> None:
    """TCP_NODELAY: a statement larger than pg8000's write buffer (a read batch) leaves in two
    segments, and without it Nagle holds the second until the server's delayed ACK (~40 ms)."""
    sock = patches.pg8000_socket(conn)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


TIMESTAMPTZ_OID = 1184


def _timestamptz_in(text: str):
    """pg8000 parses timestamptz with strptime (~40 us each); fromisoformat reads PostgreSQL's
    output format about 100x faster. Anything it cannot read goes to pg8000's own parser."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return pg8000.converters.timestamptz_in(text)


def _looks_closed(conn: pg8000.native.Connection) -> bool:
    """True when an idle connection's socket is readable: the server closed it or sent FATAL.

    An idle connection has nothing to read, so this costs no round trip. Without access to the
    socket (an untested pg8000) it answers False and the idle ping of checkout decides.
    """
    sock = patches.pg8000_socket(conn)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _rows(conn: pg8000.native.Connection, result: list | None) -> list[dict[str, Any]]:
    if not result or not conn.columns:
        return []
    names = [c["name"] for c in conn.columns]
    return [dict(zip(names, row)) for row in result]


class Session:
    """One checked-out connection; `query`, `one`, `scalar`, `execute` run SQL with :named params."""

    def __init__(self, conn: pg8000.native.Connection):
        self.conn = conn

    def _run(self, sql: str, params: dict[str, Any]) -> list | None:
        started = time.perf_counter()
        try:
            return self.conn.run(sql, **params)
        finally:
            _observe_latency(time.perf_counter() - started)

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return _rows(self.conn, self._run(sql, params))

    def one(self, sql: str, **params: Any) -> dict[str, Any] | None:
        rows = self.query(sql, **params)
        return rows[0] if rows else None

    def scalar(self, sql: str, **params: Any) -> Any:
        result = self._run(sql, params)
        return result[0][0] if result else None

    def execute(self, sql: str, **params: Any) -> int:
        self._run(sql, params)
        return self.conn.row_count

    def prepared(self, sql: str):
        """`sql` as a statement prepared once per connection (parsed and planned once), for hot paths."""
        statements = self.conn.__dict__.setdefault("_scaivault_prepared", {})
        statement = statements.get(sql)
        if statement is None:
            statement = statements[sql] = self.conn.prepare(sql)
        return statement

    def run_prepared(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Run a hot statement through `prepared`; rows as dicts."""
        statement = self.prepared(sql)
        rows = statement.run(**params)
        if not rows:
            return []
        names = [c["name"] for c in statement.columns]
        return [dict(zip(names, row)) for row in rows]


def _observe_latency(seconds: float) -> None:
    """scaivault_db_latency_seconds; imported late so that `serve` sets up multiprocess metrics first."""
    from .metrics import DB_LATENCY

    DB_LATENCY.observe(seconds)


class _Waiter:
    """A checkout waiting its turn: handed a connection, or the right to open one."""

    __slots__ = ("event", "conn", "may_open")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.conn: tuple[pg8000.native.Connection, float] | None = None
        self.may_open = False


class Pool:
    """A bounded pool of connections belonging to one process, fair to waiters.

    Idle connections are reused last-in first-out (warm ones first); checkouts that must wait
    are served first-in first-out: a returned connection goes straight to the oldest waiter, and
    a new arrival never takes one while others wait (otherwise arrivals jump the queue and the
    tail grows; issue 10). Checkout checks health: a connection whose socket shows the server
    went away is replaced (no round trip), and one idle longer than IDLE_CHECK_SECONDS is pinged.
    """

    def __init__(self, url: DatabaseURL, size: int, name: str,
                 checkout_timeout: float = CHECKOUT_TIMEOUT_SECONDS):
        self.url = url
        self.size = size
        self.name = name
        self.checkout_timeout = checkout_timeout
        self.pid = os.getpid()
        self._idle: list[tuple[pg8000.native.Connection, float]] = []
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._created = 0
        self._lock = threading.Lock()

    @property
    def stats(self) -> dict[str, int]:
        return {"pool_size": self.size, "pool_open": self._created,
                "pool_available": self.size - self._created + len(self._idle), "pool_waiting": len(self._waiters)}

    def _open(self) -> pg8000.native.Connection:
        try:
            return connect(self.url, application_name=f"scaivault-{self.name}")
        except DatabaseUnavailable as exc:
            self._release_slot()
            log.warning("database connection failed", extra={"error": exc.message})
            raise DatabaseUnavailable("database unavailable", exc.reason) from None

    def _release_slot(self) -> None:
        """One connection fewer exists: the oldest waiter may open its own."""
        with self._lock:
            self._created -= 1
            if not self._waiters:
                return
            waiter = self._waiters.popleft()
            self._created += 1
            waiter.may_open = True
        waiter.event.set()

    def checkout(self) -> pg8000.native.Connection:
        waiter = None
        with self._lock:
            if self._idle and not self._waiters:
                conn, idle_since = self._idle.pop()
            elif self._created < self.size:
                self._created += 1
                conn = None
            else:
                waiter = _Waiter()
                self._waiters.append(waiter)
        if waiter is not None:
            waiter.event.wait(self.checkout_timeout)
            with self._lock:
                if waiter.conn is None and not waiter.may_open:
                    self._waiters.remove(waiter)
                    raise ServiceUnavailable(message="database pool exhausted")
            if waiter.may_open:
                return self._open()
            conn, idle_since = waiter.conn
        elif conn is None:
            return self._open()
        if _looks_closed(conn):
            self.discard(conn)
            return self.checkout()
        if time.monotonic() - idle_since > IDLE_CHECK_SECONDS:
            try:
                conn.run("SELECT 1")
            except Exception:
                self.discard(conn)
                return self.checkout()
        return conn

    def checkin(self, conn: pg8000.native.Connection) -> None:
        item = (conn, time.monotonic())
        with self._lock:
            if not self._waiters:
                self._idle.append(item)
                return
            waiter = self._waiters.popleft()
            waiter.conn = item
        waiter.event.set()

    def discard(self, conn: pg8000.native.Connection) -> None:
        self._release_slot()
        try:
            conn.close()
        except Exception:
            pass

    def close(self) -> None:
        while True:
            with self._lock:
                if not self._idle:
                    return
                conn, _ = self._idle.pop()
            self.discard(conn)


class Database:
    """The process's database handle: primary pool, optional read pool, transactions."""

    def __init__(self, url: DatabaseURL, read_url: DatabaseURL | None = None, pool_size: int = 10):
        self.url = url
        self.read_url = read_url
        self.pool_size = pool_size
        self._pools: dict[str, Pool] = {}
        self._lock = threading.Lock()

    def pool(self, role: str = "primary") -> Pool:
        pool = self._pools.get(role)
        if pool is None or pool.pid != os.getpid():
            with self._lock:
                pool = self._pools.get(role)
                if pool is None or pool.pid != os.getpid():
                    url = self.read_url if role == "read" and self.read_url else self.url
                    pool = Pool(url, self.pool_size, role)
                    self._pools[role] = pool
        return pool

    @contextmanager
    def session(self, role: str = "primary") -> Iterator[Session]:
        """A connection in autocommit mode, returned to the pool afterwards."""
        pool = self.pool(role if self.read_url else "primary")
        conn = pool.checkout()
        try:
            yield Session(conn)
        except (InterfaceError, OSError):
            pool.discard(conn)
            conn = None
            raise ServiceUnavailable(message="database connection lost") from None
        except DatabaseError:
            # a failed statement in autocommit leaves the connection usable
            pool.checkin(conn)
            conn = None
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # a timeout or greenlet kill may have cut a statement in half: the protocol state
                # is unknown, so the connection must not be reused
                pool.discard(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                pool.checkin(conn)

    @contextmanager
    def transaction(self, *, isolation: str | None = None) -> Iterator[Session]:
        """BEGIN ... COMMIT on the primary; ROLLBACK when the block raises."""
        with self.session() as s:
            s.conn.run("BEGIN" if not isolation else f"BEGIN ISOLATION LEVEL {isolation}")
            try:
                yield s
            except Exception:
                try:
                    s.conn.run("ROLLBACK")
                except Exception:
                    pass
                raise
            # (a BaseException skips ROLLBACK: session() discards the connection and the server
            # rolls the transaction back when it closes)
            s.conn.run("COMMIT")

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.session() as s:
            return s.query(sql, **params)

    def one(self, sql: str, **params: Any) -> dict[str, Any] | None:
        with self.session() as s:
            return s.one(sql, **params)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.session() as s:
            return s.scalar(sql, **params)

    def execute(self, sql: str, **params: Any) -> int:
        with self.session() as s:
            return s.execute(sql, **params)

    def read_query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """A read-only query, routed to DATABASE_URL_READ when it is configured."""
        with self.session("read") as s:
            return s.query(sql, **params)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
