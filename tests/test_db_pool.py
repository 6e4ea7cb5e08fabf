"""The connection pool is fair: waiters are served in arrival order, and a new arrival never
takes a returned connection while others wait (issue 10: queue jumping made the p99 tail)."""
from __future__ import annotations

import threading
import time

import pytest

from scaivault.config import DatabaseURL
from scaivault.db import Database
from scaivault.errors import ServiceUnavailable


@pytest.fixture
def db(database_url):
    database = Database(DatabaseURL.parse("DATABASE_URL", database_url), pool_size=1)
    yield database
    database.close()


def test_waiters_get_the_connection_in_arrival_order(db):
    pool = db.pool()
    held = pool.checkout()
    order: list[int] = []

    def wait_turn(n: int) -> None:
        conn = pool.checkout()
        order.append(n)
        time.sleep(0.01)
        pool.checkin(conn)

    threads = []
    for n in range(6):
        t = threading.Thread(target=wait_turn, args=(n,))
        t.start()
        threads.append(t)
        while pool.stats["pool_waiting"] < n + 1:
            time.sleep(0.001)
    pool.checkin(held)
    # an arrival after the waiters queues behind them instead of taking the returned connection
    late = threading.Thread(target=wait_turn, args=(99,))
    late.start()
    for t in threads + [late]:
        t.join(10)
    assert order == [0, 1, 2, 3, 4, 5, 99]
    assert pool.stats["pool_open"] == 1 and pool.stats["pool_waiting"] == 0


def test_a_discarded_connection_lets_the_oldest_waiter_open_a_new_one(db):
    pool = db.pool()
    held = pool.checkout()
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.checkout()))
    waiter.start()
    while pool.stats["pool_waiting"] < 1:
        time.sleep(0.001)
    pool.discard(held)
    waiter.join(10)
    assert got and got[0] is not held and got[0].run("SELECT 1") == [[1]]
    pool.checkin(got[0])


def test_a_waiter_past_the_checkout_timeout_gets_pool_exhausted_and_leaves_the_queue(db):
    pool = db.pool()
    pool.checkout_timeout = 0.2
    held = pool.checkout()
    with pytest.raises(ServiceUnavailable):
        pool.checkout()
    assert pool.stats["pool_waiting"] == 0
    pool.checkin(held)
    pool.checkin(pool.checkout())
