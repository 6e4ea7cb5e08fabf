"""The database layer: a bounded pool per process (new after fork), a health check on checkout,
transactions, read routing to DATABASE_URL_READ, and lost connections replaced."""
from __future__ import annotations

import os
import time

import pg8000.native
import pytest

from scaivault.config import DatabaseURL
from scaivault.db import Database, DatabaseUnavailable, Pool
from scaivault.errors import ServiceUnavailable
from tests.foundation_support import free_port


def _url(text: str) -> DatabaseURL:
    return DatabaseURL.parse("DATABASE_URL", text)


@pytest.fixture
def db(database_url):
    database = Database(_url(database_url), pool_size=3)
    yield database
    database.close()


def _terminate(database_url: str, pid: int) -> None:
    u = _url(database_url)
    admin = pg8000.native.Connection(user=u.user, host=u.host, port=u.port, database="postgres")
    try:
        assert admin.run("SELECT pg_terminate_backend(:p)", p=pid)[0][0] is True
    finally:
        admin.close()


def test_a_terminated_connection_is_replaced_and_the_next_query_succeeds(db, database_url):
    first = db.scalar("SELECT pg_backend_pid()")
    _terminate(database_url, first)
    time.sleep(0.1)  # let the server's FATAL and close reach the socket
    second = db.scalar("SELECT pg_backend_pid()")
    assert second != first
    assert db.pool().stats["pool_open"] == 1


def test_a_connection_that_dies_inside_a_query_is_discarded_not_returned(db, database_url):
    with pytest.raises(ServiceUnavailable):
        with db.session() as s:
            s.query("SELECT pg_terminate_backend(pg_backend_pid())")
    assert db.scalar("SELECT 1") == 1
    assert db.pool().stats["pool_open"] == 1


def test_transactions_commit_or_roll_back_as_a_whole(db):
    db.execute("CREATE TABLE IF NOT EXISTS fdn_tx_probe (n int)")
    db.execute("TRUNCATE fdn_tx_probe")
    with db.transaction() as tx:
        tx.execute("INSERT INTO fdn_tx_probe VALUES (1)")
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO fdn_tx_probe VALUES (2)")
            raise RuntimeError("abort")
    assert [r["n"] for r in db.query("SELECT n FROM fdn_tx_probe")] == [1]
    db.execute("DROP TABLE fdn_tx_probe")


def test_a_failed_statement_leaves_the_pooled_connection_usable(db):
    with pytest.raises(Exception):
        db.query("SELECT * FROM no_such_table")
    assert db.one("SELECT 41 + 1 AS answer") == {"answer": 42}


def test_read_queries_go_to_the_read_url_and_writes_to_the_primary(databases, database_url):
    replica = databases.create()
    database = Database(_url(database_url), _url(replica))
    try:
        assert database.read_query("SELECT current_database() AS d")[0]["d"] == _url(replica).database
        assert database.query("SELECT current_database() AS d")[0]["d"] == _url(database_url).database
        with database.transaction() as tx:
            assert tx.scalar("SELECT current_database()") == _url(database_url).database
    finally:
        database.close()


def test_without_a_read_url_reads_use_the_primary(db, database_url):
    assert db.read_query("SELECT current_database() AS d")[0]["d"] == _url(database_url).database


def test_the_pool_is_bounded_and_a_full_pool_answers_service_unavailable(database_url):
    pool = Pool(_url(database_url), size=2, name="bounded", checkout_timeout=0.2)
    a, b = pool.checkout(), pool.checkout()
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="exhausted"):
            pool.checkout()
        assert time.monotonic() - started < 2
        pool.checkin(a)
        assert pool.checkout() is a          # the freed connection is handed out again
    finally:
        pool.discard(a)
        pool.discard(b)


def test_each_process_gets_its_own_pool_after_fork(db):
    parent_pid = db.scalar("SELECT pg_backend_pid()")
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the child must not touch the parent's sockets
        try:
            os.write(write_fd, str(db.scalar("SELECT pg_backend_pid()")).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    child_backend = int(os.read(read_fd, 64).decode())
    os.waitpid(child, 0)
    os.close(read_fd)
    assert child_backend != parent_pid
    assert db.scalar("SELECT pg_backend_pid()") == parent_pid   # the parent's connection is intact


def test_an_unreachable_database_raises_service_unavailable_without_the_password():
    url = _url(f"postgresql://vault:Pa55wordXYZ@127.0.0.1:{free_port()}/scaivault")
    database = Database(url)
    with pytest.raises(DatabaseUnavailable) as caught:
        database.scalar("SELECT 1")
    assert caught.value.status == 503
    assert "Pa55wordXYZ" not in str(caught.value) + caught.value.message + caught.value.reason
    assert database.pool().stats["pool_open"] == 0    # the failed slot was given back


class _Interrupted(BaseException):
    """Stands in for gevent.Timeout or GreenletExit cutting into a request."""


def test_a_connection_interrupted_by_a_timeout_is_discarded_and_its_transaction_rolled_back(db):
    db.execute("CREATE TABLE IF NOT EXISTS fdn_interrupt_probe (n int)")
    db.execute("TRUNCATE fdn_interrupt_probe")
    pid = db.scalar("SELECT pg_backend_pid()")
    with pytest.raises(_Interrupted):
        with db.transaction() as tx:
            tx.execute("INSERT INTO fdn_interrupt_probe VALUES (1)")
            raise _Interrupted()
    assert db.pool().stats["pool_open"] == 0
    assert db.scalar("SELECT pg_backend_pid()") != pid
    assert db.scalar("SELECT count(*) FROM fdn_interrupt_probe") == 0
    db.execute("DROP TABLE fdn_interrupt_probe")


@pytest.mark.parametrize("sslmode, tls_expected", [("disable", False), ("prefer", None), ("require", True)])
def test_sslmode_is_honoured_like_libpq(database_url, sslmode, tls_expected):
    from scaivault.db import connect

    base = database_url.split("?")[0]
    server_has_tls = _server_has_tls(database_url)
    if tls_expected and not server_has_tls:
        with pytest.raises(DatabaseUnavailable, match="refuses SSL"):
            connect(_url(f"{base}?sslmode={sslmode}"))
        return
    conn = connect(_url(f"{base}?sslmode={sslmode}"))
    try:
        encrypted = conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0]
    finally:
        conn.close()
    # prefer: TLS when the server offers it, plaintext otherwise
    assert encrypted is (server_has_tls if tls_expected is None else tls_expected)


def _server_has_tls(database_url: str) -> bool:
    u = _url(database_url)
    admin = pg8000.native.Connection(user=u.user, host=u.host, port=u.port, database=u.database)
    try:
        return admin.run("SHOW ssl")[0][0] == "on"
    finally:
        admin.close()
