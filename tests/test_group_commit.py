"""Group commit (issue 10): concurrent reads of a process share one statement and one commit,
a write is one statement; every answer is still the one the request would have had alone, its
audit entry durable before the value leaves, and the hash chain intact."""
from __future__ import annotations

import threading
import time
from typing import Callable

import pytest

from scaivault.audit.chain import verify_chain
from scaivault.group_commit import GroupCommit

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, new_tenant
from tests.test_audit_writer import no_audit_insert_url  # noqa: F401  (fixture)
from tests.test_metrics import value


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


def concurrently(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def watch_batches(monkeypatch, app) -> list[int]:
    sizes: list[int] = []
    store = app.extensions["scaivault"].secret_store
    monkeypatch.setattr(store.read_batch, "on_batch", sizes.append)
    return sizes


def test_concurrent_reads_share_a_statement_and_each_gets_its_own_row(app, scaikey, monkeypatch):
    tenant = new_tenant()
    callers = [Callers(scaikey, app.test_client()).admin(tenant) for _ in range(24)]
    for i in range(24):
        assert callers[0].put(f"/v1/secrets/gc/s{i}", json={"data": {"n": i}}).status_code == 201
    callers[0].get("/v1/secrets/gc/s0")                  # warm: keys cached, statement prepared
    sizes = watch_batches(monkeypatch, app)
    answers = concurrently(24, lambda i: callers[i].get(f"/v1/secrets/gc/s{i}"))
    assert [a.status_code for a in answers] == [200] * 24
    assert [a.get_json()["data"] for a in answers] == [{"n": i} for i in range(24)]
    assert sum(sizes) == 24 and max(sizes) > 1, sizes     # batched, and nothing ran twice
    db = app.extensions["scaivault"].db
    rows = db.query("SELECT request_id, secret_path, extra_data FROM audit_log WHERE tenant_id = :t "
                    "AND action = 'read' AND request_id = ANY(:ids)", t=tenant,
                    ids=[a.headers["X-Request-ID"] for a in answers])
    assert sorted((r["request_id"], r["secret_path"], r["extra_data"]["version"]) for r in rows) == sorted(
        (answers[i].headers["X-Request-ID"], f"gc/s{i}", 1) for i in range(24))
    assert verify_chain(db, tenant).valid


def test_one_batch_spanning_tenants_extends_each_tenant_chain_in_submission_order(app, scaikey):
    """Migration 0160 chains a batch's entries per tenant in one pass: two tenants interleaved in one
    statement, twice, leave both chains verifying, in the order the reads were submitted."""
    from scaivault.audit.writer import read_batch_and_record
    from scaivault.audit.entry import AuditEntry

    tenants = [new_tenant(), new_tenant()]
    for tenant in tenants:
        admin = Callers(scaikey, app.test_client()).admin(tenant)
        for i in range(3):
            assert admin.put(f"/v1/secrets/span/s{i}", json={"data": {"n": i}}).status_code == 201
    db = app.extensions["scaivault"].db
    submitted = []
    for round_ in range(2):
        items = []
        for i in range(3):
            for tenant in tenants:
                entry = AuditEntry(action="read", tenant_id=tenant, identity_type="user", identity_id="user:span",
                                   secret_path=f"span/s{i}", request_id=f"req_span_{tenant}_{round_}_{i}")
                items.append({"tenant": tenant, "partner": None, "path": f"span/s{i}", "version": None,
                              "entry": entry})
                submitted.append((tenant, entry.request_id))
        items.append({"tenant": tenants[0], "partner": None, "path": "span/none", "version": None,
                      "entry": AuditEntry(action="read", tenant_id=tenants[0], request_id="req_span_missing")})
        with db.session() as s:
            rows = read_batch_and_record(s, items)
        assert [r["audited"] for r in rows[:-1]] == [True] * 6 and rows[-1] is None
        assert [r["current_version"] for r in rows[:-1]] == [1] * 6
    for tenant in tenants:
        chain = db.query("SELECT request_id, chain_seq FROM audit_log WHERE tenant_id = :t AND action = 'read' "
                         "ORDER BY chain_lane, chain_seq", t=tenant)
        assert [r["request_id"] for r in chain] == [rid for t, rid in submitted if t == tenant]
        assert verify_chain(db, tenant).valid


def test_a_read_that_fails_in_a_batch_fails_alone_and_the_others_are_served(app, scaikey, monkeypatch):
    tenant = new_tenant()
    callers = [Callers(scaikey, app.test_client()).admin(tenant) for _ in range(12)]
    admin = callers[0]
    assert admin.put("/v1/secrets/gf/ok", json={"data": {"v": 1}}).status_code == 201
    assert admin.put("/v1/secrets/gf/ok", json={"data": {"v": 2}}).status_code == 200
    assert admin.post("/v1/secrets/gf/ok:destroy", json={"versions": [1]}).status_code == 200
    cases = ["/v1/secrets/gf/ok", "/v1/secrets/gf/missing", "/v1/secrets/gf/ok?version=1",
             "/v1/secrets/gf/ok?version=9"] * 3
    expected = [(200, None), (404, "secret_not_found"), (410, "version_destroyed"), (404, "version_not_found")] * 3
    sizes = watch_batches(monkeypatch, app)
    answers = concurrently(12, lambda i: callers[i].get(cases[i]))
    got = [(a.status_code, (a.get_json().get("error") or {}).get("code")) for a in answers]
    assert got == expected
    assert all(a.get_json()["data"] == {"v": 2} for a in answers[0::4])
    assert sum(sizes) == 12
    db = app.extensions["scaivault"].db
    entries = db.query("SELECT success FROM audit_log WHERE tenant_id = :t AND action = 'read'", t=tenant)
    assert sorted(e["success"] for e in entries) == [False] * 9 + [True] * 3
    assert verify_chain(db, tenant).valid


def test_a_failed_audit_insert_gives_every_request_of_the_batch_503_and_no_value(
        make_app, scaikey, no_audit_insert_url, monkeypatch):  # noqa: F811
    tenant = new_tenant()
    writer = Callers(scaikey, make_app(RATE_LIMITS=HIGH_RATE_LIMITS).test_client()).admin(tenant)
    for i in range(10):
        assert writer.put(f"/v1/secrets/na/s{i}", json={"data": {"secret": f"value-{i}-never-sent"}}).status_code == 201
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS, DATABASE_URL=no_audit_insert_url)
    callers = [Callers(scaikey, app.test_client()).admin(tenant) for _ in range(10)]
    sizes = watch_batches(monkeypatch, app)
    answers = concurrently(10, lambda i: callers[i].get(f"/v1/secrets/na/s{i}"))
    assert [(a.status_code, a.get_json()["error"]["code"]) for a in answers] == [(503, "audit_unavailable")] * 10
    assert not any(b"never-sent" in a.data for a in answers)
    assert sizes and sum(sizes) >= 10
    write = callers[0].put("/v1/secrets/na/s0", json={"data": {"secret": "not-stored"}})
    assert write.status_code == 503 and write.get_json()["error"]["code"] == "audit_unavailable"
    assert writer.get("/v1/secrets/na/s0").get_json()["version"] == 1


def test_a_write_is_one_statement_once_the_version_is_known(app, scaikey, monkeypatch):
    import pg8000.core

    tenant = new_tenant()
    admin = Callers(scaikey, app.test_client()).admin(tenant)
    assert admin.put("/v1/secrets/w1/a", json={"data": {"v": 0}}).status_code == 201
    count = [0]
    original = pg8000.core.CoreConnection.handle_messages

    def counting(conn, *args, **kwargs):
        count[0] += 1
        return original(conn, *args, **kwargs)

    written = value(app.test_client().get("/v1/metrics").get_data(as_text=True),
                    "scaivault_audit_entries_total", action="write", success="true")
    monkeypatch.setattr(pg8000.core.CoreConnection, "handle_messages", counting)
    response = admin.put("/v1/secrets/w1/a", json={"data": {"v": 1}})
    monkeypatch.undo()
    assert response.status_code == 200 and response.get_json()["version"] == 2
    assert count[0] == 1
    assert value(app.test_client().get("/v1/metrics").get_data(as_text=True),
                 "scaivault_audit_entries_total", action="write", success="true") == written + 1
    db = app.extensions["scaivault"].db
    entries = db.query("SELECT extra_data FROM audit_log WHERE tenant_id = :t AND action = 'write' ORDER BY ts", t=tenant)
    assert [(e["extra_data"]["version"], e["extra_data"]["created"]) for e in entries] == [(1, True), (2, False)]
    assert verify_chain(db, tenant).valid


def test_a_writer_that_saw_an_old_version_reseals_for_the_current_one(make_app, scaikey):
    tenant = new_tenant()
    first, second = (Callers(scaikey, make_app(RATE_LIMITS=HIGH_RATE_LIMITS,
                                               SECRET_MAX_VERSIONS_DEFAULT="2").test_client()).admin(tenant)
                     for _ in range(2))
    assert first.put("/v1/secrets/ws/a", json={"data": {"by": "first"}}).status_code == 201
    for n in range(2, 5):
        assert second.put("/v1/secrets/ws/a", json={"data": {"by": f"second-{n}"}}).get_json()["version"] == n
    # `first` still believes version 1 is current: its statement is refused and it reseals for 5
    response = first.put("/v1/secrets/ws/a", json={"data": {"by": "first-again"}})
    assert response.status_code == 200 and response.get_json()["version"] == 5
    assert first.get("/v1/secrets/ws/a").get_json()["data"] == {"by": "first-again"}
    assert first.get("/v1/secrets/ws/a?version=4").get_json()["data"] == {"by": "second-4"}
    assert first.get("/v1/secrets/ws/a?version=3").status_code == 404     # pruned (max_versions 2)
    db = first.client.application.extensions["scaivault"].db
    pruned = db.query("SELECT extra_data FROM audit_log WHERE tenant_id = :t AND action = 'write' ORDER BY ts", t=tenant)
    assert [e["extra_data"]["pruned_versions"] for e in pruned] == [0, 0, 1, 1, 1]
    assert verify_chain(db, tenant).valid


def first_batch_held() -> tuple[Callable, threading.Event, list[list[int]]]:
    """A run_batch that records its batches and holds the first until released; answers 10 x item."""
    release = threading.Event()
    calls: list[list[int]] = []

    def run(items):
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(5)
        return [i * 10 for i in items]

    return run, release, calls


def test_leadership_passes_on_so_no_request_waits_for_others_after_its_own_batch():
    run, release, calls = first_batch_held()
    gc = GroupCommit(run, max_inflight=1)
    out = {}
    first = threading.Thread(target=lambda: out.__setitem__(0, gc.submit(0)))
    first.start()
    while not calls:
        pass
    others = [threading.Thread(target=lambda i=i: out.__setitem__(i, gc.submit(i))) for i in range(1, 6)]
    for t in others:
        t.start()
    while len(gc._pending) < 5:
        pass
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert out == {i: i * 10 for i in range(6)}
    assert calls[0] == [0] and sorted(calls[1]) == [1, 2, 3, 4, 5]


def test_a_failing_batch_is_rerun_item_by_item():
    def run(items):
        if len(items) > 1 or items[0] == "bad":
            raise ValueError("one bad item spoils the statement")
        return [items[0].upper()]

    gc = GroupCommit(run)
    gc._pending = []
    results = {}
    # drive one batch of three directly, as a leader would
    from scaivault.group_commit import _Ticket
    tickets = [_Ticket(x) for x in ("a", "bad", "c")]
    for ticket, result, error in gc._execute(tickets):
        results[ticket.item] = (result, type(error).__name__ if error else None)
    assert results == {"a": ("A", None), "bad": (None, "ValueError"), "c": ("C", None)}


def test_workers_of_one_server_share_version_hints_so_a_write_after_anothers_is_one_statement(
        make_app, scaikey, monkeypatch):
    """`scaivault serve` makes the hint table before forking (version_hints.share_between_workers): a
    worker writing a path the other worker moved on seals for the right version at the first try."""
    import pg8000.core

    from scaivault import version_hints

    monkeypatch.setattr(version_hints, "_shared", None)
    version_hints.share_between_workers()
    tenant = new_tenant()
    first, second = (Callers(scaikey, make_app(RATE_LIMITS=HIGH_RATE_LIMITS).test_client()).admin(tenant)
                     for _ in range(2))
    assert first.put("/v1/secrets/wh/a", json={"data": {"n": 1}}).status_code == 201
    assert second.put("/v1/secrets/wh/a", json={"data": {"n": 2}}).get_json()["version"] == 2
    count = [0]
    original = pg8000.core.CoreConnection.handle_messages

    def counting(conn, *args, **kwargs):
        count[0] += 1
        return original(conn, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(pg8000.core.CoreConnection, "handle_messages", counting)
        response = first.put("/v1/secrets/wh/a", json={"data": {"n": 3}})
    assert response.status_code == 200 and response.get_json()["version"] == 3
    assert count[0] == 1      # one statement: `first` knew of `second`'s version 2


def test_version_hints_cross_fork_and_a_wrong_hint_only_costs_a_retry(make_app, scaikey, monkeypatch):
    import os

    from scaivault import version_hints

    hints = version_hints.VersionHints()
    key = ("ptn_x", "tnt_x", "a/b")
    pid = os.fork()
    if pid == 0:       # the child notes, the parent sees it (the mapping is shared, not copied)
        hints.note(key, 41)
        os._exit(0)
    os.waitpid(pid, 0)
    assert hints.get(key) == 41 and hints.get(("ptn_x", "tnt_x", "a/c")) == 0
    # a wrong hint in either direction: the statement refuses it and the write lands at the true version
    tenant = new_tenant()
    admin = Callers(scaikey, make_app(RATE_LIMITS=HIGH_RATE_LIMITS).test_client()).admin(tenant)
    assert admin.put("/v1/secrets/wrong/a", json={"data": {"n": 1}}).status_code == 201
    store = admin.client.application.extensions["scaivault"].secret_store
    partner = admin.client.application.extensions["scaivault"].db.scalar(
        "SELECT partner_id FROM secrets WHERE tenant_id = :t AND path = 'wrong/a'", t=tenant)
    for wrong, expected in ((9, 2), (0, 3)):
        store._versions.note((partner, tenant, "wrong/a"), wrong)
        response = admin.put("/v1/secrets/wrong/a", json={"data": {"n": expected}})
        assert response.get_json()["version"] == expected
        assert admin.get("/v1/secrets/wrong/a").get_json()["data"] == {"n": expected}
    assert verify_chain(admin.client.application.extensions["scaivault"].db, tenant).valid


def test_one_batch_runs_at_a_time_until_it_stalls_then_an_arrival_starts_another():
    run, release, calls = first_batch_held()
    gc = GroupCommit(run, max_inflight=4, stall=0.3)
    out: dict[int, int] = {}

    def submit(i: int) -> threading.Thread:
        thread = threading.Thread(target=lambda: out.__setitem__(i, gc.submit(i)))
        thread.start()
        return thread

    threads = [submit(0)]
    while not calls:
        time.sleep(0.001)
    threads += [submit(1), submit(2)]
    while len(gc._pending) < 2:
        time.sleep(0.001)
    time.sleep(0.05)
    assert len(calls) == 1          # the running batch is young: the arrivals wait for it
    time.sleep(0.3)
    threads.append(submit(3))       # the running batch has stalled: this arrival starts the next one
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert calls[1] == [1, 2, 3] and 0 not in out   # served while the first batch still hangs
    for i in (1, 2, 3):
        threads[i].join(5)
    assert out == {1: 10, 2: 20, 3: 30}
    release.set()
    threads[0].join(5)
    assert out[0] == 0 and gc._leaders == 0


def test_concurrent_writes_share_a_statement_and_an_item_needing_the_general_path_takes_it_alone(
        app, scaikey, monkeypatch):
    tenant = new_tenant()
    callers = [Callers(scaikey, app.test_client()).admin(tenant) for _ in range(12)]
    for i in range(12):
        assert callers[0].put(f"/v1/secrets/wb/s{i}", json={"data": {"n": i}}).status_code == 201
    store = app.extensions["scaivault"].secret_store
    batch = store.write_batch
    sizes: list[int] = []
    monkeypatch.setattr(batch, "on_batch", sizes.append)
    monkeypatch.setattr(batch, "stall", 60.0)       # one batch at a time, however long the first is held
    run, held = batch.run_batch, threading.Event()

    def hold_first(items):
        if not held.is_set():
            held.set()
            deadline = time.monotonic() + 10
            while len(batch._pending) < 11 and time.monotonic() < deadline:
                time.sleep(0.005)
        return run(items)

    monkeypatch.setattr(batch, "run_batch", hold_first)
    # request 5 states a stale version (cas 0): its item needs the general path, which answers 409
    answers = concurrently(12, lambda i: callers[i].put(
        f"/v1/secrets/wb/s{i}", json={"data": {"n": i * 10}, **({"options": {"cas": 0}} if i == 5 else {})}))
    assert [a.status_code for a in answers] == [409 if i == 5 else 200 for i in range(12)]
    assert all(a.get_json()["version"] == 2 for i, a in enumerate(answers) if i != 5)
    assert answers[5].get_json()["error"]["code"] == "version_conflict"
    assert sorted(sizes) == [1, 11], sizes           # the held one, then all the others in one statement
    for i in range(12):
        assert callers[0].get(f"/v1/secrets/wb/s{i}").get_json()["data"] == {"n": i if i == 5 else i * 10}
    db = app.extensions["scaivault"].db
    rows = db.query("SELECT request_id, secret_path, extra_data FROM audit_log WHERE tenant_id = :t "
                    "AND action = 'write' AND success AND request_id = ANY(:ids)", t=tenant,
                    ids=[a.headers["X-Request-ID"] for a in answers])
    assert sorted((r["secret_path"], r["extra_data"]["version"]) for r in rows) == sorted(
        (f"wb/s{i}", 2) for i in range(12) if i != 5)
    assert verify_chain(db, tenant).valid
