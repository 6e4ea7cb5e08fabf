"""The bare hot routes (GET/PUT /v1/secrets/{path} outside Flask's request context) answer exactly
as Flask does: the same requests sent to an app with BARE_HOT_ROUTES on and one with it off give
the same status, headers (less Date) and bodies, and leave the same audit entries."""
from __future__ import annotations

import re

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, grant, new_tenant

TS = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
REQ = re.compile(rb"req_[0-9a-f]{24}")
LOW_LIMITS = HIGH_RATE_LIMITS.replace("secrets:read: {rate: 100000", "secrets:read: {rate: 3").replace(
    "secrets:write: {rate: 100000", "secrets:write: {rate: 2")


class Side:
    """One app (hot routes on or off) with its own tenant and callers set up the same way."""

    def __init__(self, name: str, app, scaikey, setup=(("hot/db", ["one", "two"]), ("hot/deleted", ["x"]),
                                                      ("hot/versions", ["a"]))):
        self.name = name
        self.app = app
        self.tenant = new_tenant()
        client = app.test_client()
        callers = Callers(scaikey, client)
        self.admin = callers.admin(self.tenant)
        self.user = callers.user(f"reader@{self.tenant}.example", self.tenant)
        grant(self.admin, self.user.identity_id, [{"path_pattern": "hot/**", "permissions": ["read", "write"]}])
        self.read_only = callers.user(f"ro@{self.tenant}.example", self.tenant, scopes=("secrets:write",))
        grant(self.admin, self.read_only.identity_id, [{"path_pattern": "hot/**", "permissions": ["read", "write"]}])
        self.expired = callers.user(f"old@{self.tenant}.example", self.tenant, expires_in=-300)
        good = self.user.token
        head, payload, signature = good.split(".")
        forged = ("B" if signature[0] == "A" else "A") + signature[1:]     # a wrong signature, well-formed
        self.forged = type(self.user)(client, f"{head}.{payload}.{forged}", self.user.identity_id)
        for path, values in setup:
            for value in values:
                assert self.admin.put(f"/v1/secrets/{path}", json={"data": {"v": value}}).status_code in (200, 201)
        if any(path == "hot/deleted" for path, _ in setup):
            assert self.admin.delete("/v1/secrets/hot/deleted").status_code == 200
        self.dispatched = 0
        original = app.full_dispatch_request

        def counting():
            self.dispatched += 1
            return original()

        app.full_dispatch_request = counting

    def send(self, who: str, method: str, url: str, **kw):
        if who == "anonymous":
            return self.user.client.open(url.replace("{tenant}", self.tenant), method=method, **kw)
        return getattr(self, who).call(method, url.replace("{tenant}", self.tenant), **kw)

    def normalise(self, response) -> tuple:
        body = response.get_data().replace(self.tenant.encode(), b"TENANT")
        body = REQ.sub(b"REQ", TS.sub(b"TS", body))
        headers = []
        for name, value in response.headers.items():
            if name == "Date":
                continue
            if name in ("X-Request-ID", "X-RateLimit-Reset", "X-RateLimit-Remaining"):
                assert re.fullmatch(r"req_[0-9a-f]{24}|\d+", value), (name, value)
                value = "*"
            headers.append((name, value.replace(self.tenant, "TENANT")))
        return response.status, headers, body


@pytest.fixture(scope="module")
def sides(make_app, scaikey):
    return Side("on", make_app(RATE_LIMITS=HIGH_RATE_LIMITS, BARE_HOT_ROUTES="true"), scaikey), \
        Side("off", make_app(RATE_LIMITS=HIGH_RATE_LIMITS, BARE_HOT_ROUTES="false"), scaikey)


HUGE = b'{"data": {"v": "' + b"x" * (2 * 1024 * 1024) + b'"}}'

# (who, method, url, keyword arguments, served by the hot route)
CASES = [
    ("user", "GET", "/v1/secrets/hot/db", {}, True),
    ("user", "GET", "/v1/secrets/hot/db?version=1", {}, True),
    ("user", "GET", "/v1/secrets/hot/db?version=9", {}, True),
    ("user", "GET", "/v1/secrets/hot/db?version=x", {}, True),
    ("user", "GET", "/v1/secrets/hot/missing", {}, True),
    ("user", "GET", "/v1/secrets/hot/deleted", {}, True),
    ("user", "GET", "/v1/secrets/elsewhere/db", {}, True),
    ("user", "GET", "/v1/secrets/hot/db", {"headers": {"X-Request-ID": "client-1"}}, True),
    ("user", "GET", "/v1/secrets/hot/db", {"headers": {"X-Tenant-ID": "tnt_someone_else"}}, True),
    ("user", "GET", "/v1/t/{tenant}/secrets/hot/db", {}, True),
    ("user", "GET", "/v1/t/tnt_other/secrets/hot/db", {}, True),
    ("user", "GET", "/v1/t/bad!tenant/secrets/hot/db", {}, True),
    ("user", "GET", "/v1/secrets/hot/db?x=%00", {}, True),
    ("read_only", "GET", "/v1/secrets/hot/db", {}, True),
    ("expired", "GET", "/v1/secrets/hot/db", {}, True),
    ("forged", "GET", "/v1/secrets/hot/db", {}, True),
    ("anonymous", "GET", "/v1/secrets/hot/db", {}, True),
    ("anonymous", "GET", "/v1/secrets/hot/db", {"headers": {"Authorization": "Basic abc"}}, True),
    ("user", "GET", "/v1/secrets/" + "/".join(["d"] * 11), {}, True),
    ("user", "GET", "/v1/secrets/hot/" + "x" * 600, {}, True),
    ("user", "GET", "/v1/secrets/batch", {}, True),
    ("user", "GET", "/v1/secrets/hot/versions:versions", {}, False),
    ("user", "GET", "/v1/secrets/hot/versions/versions", {}, True),
    ("user", "GET", "/v1/secrets/hot/db:metadata", {}, False),
    ("user", "GET", "/v1/secrets/Hot/DB", {}, False),
    ("user", "GET", "/v1/secrets/hot/db/", {}, False),
    ("user", "GET", "/v1/secrets/hot//db", {}, False),
    ("user", "HEAD", "/v1/secrets/hot/db", {}, False),
    ("user", "PUT", "/v1/secrets/hot/new", {"json": {"data": {"v": 1}}}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"json": {"data": {"v": 2}, "metadata": {"tags": ["a"]}}}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"json": {"data": {"v": 3}, "options": {"cas": 1}}}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"json": {"data": {"v": 3}, "options": {"max_versions": 1}}}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"json": {"data": {"v": 4}, "nope": 1}}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"data": b"{not json", "content_type": "application/json"}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"data": b"[1, 2]", "content_type": "application/json"}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"data": b"", "content_type": "application/json"}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"data": b'{"data": {}}', "content_type": "text/plain"}, True),
    ("user", "PUT", "/v1/secrets/hot/new", {"data": HUGE, "content_type": "application/json"}, True),
    ("user", "PUT", "/v1/secrets/hot/big", {"json": {"data": {"v": "x" * 70_000}}}, True),
    ("user", "PUT", "/v1/secrets/sys/x", {"json": {"data": {"v": 1}}}, True),
    ("user", "PUT", "/v1/secrets/elsewhere/x", {"json": {"data": {"v": 1}}}, True),
    ("user", "PUT", "/v1/secrets/batch", {"json": {"data": {"v": 1}}}, True),
    ("user", "PUT", "/v1/secrets/hot/deleted", {"json": {"data": {"v": 1}}}, True),
    ("expired", "PUT", "/v1/secrets/hot/new", {"json": {"data": {"v": 1}}}, True),
    ("user", "PUT", "/v1/secrets/hot/db:metadata", {"json": {"data": {"v": 1}}}, False),
    ("user", "POST", "/v1/secrets/hot/db", {"json": {"data": {"v": 1}}}, False),
    ("user", "DELETE", "/v1/secrets/hot/versions", {}, False),
    ("user", "GET", "/v1/secrets/hot/versions", {}, True),
]


def audit_trail(side: Side) -> list[tuple]:
    rows = side.app.extensions["scaivault"].db.query(
        "SELECT action, success, secret_path, identity_id, extra_data FROM audit_log WHERE tenant_id = :t ORDER BY ts, id",
        t=side.tenant)
    keep = ("error", "version", "created", "pruned_versions", "method", "client_request_id", "cas")
    return [(r["action"], r["success"], r["secret_path"], r["identity_id"].replace(side.tenant, "TENANT"),
             {k: v for k, v in (r["extra_data"] or {}).items() if k in keep}) for r in rows]


def test_hot_routes_answer_byte_for_byte_as_flask_does(sides):
    on, off = sides
    before = len(audit_trail(on)), len(audit_trail(off))
    for who, method, url, kw, hot in CASES:
        dispatched = on.dispatched
        answers = [side.normalise(side.send(who, method, url, **kw)) for side in (on, off)]
        assert answers[0] == answers[1], (who, method, url, kw)
        assert (on.dispatched == dispatched) is hot, (method, url, "hot route" if hot else "Flask")
    on.app.extensions["scaivault"].secret_store.flush_touches()
    off.app.extensions["scaivault"].secret_store.flush_touches()
    assert audit_trail(on)[before[0]:] == audit_trail(off)[before[1]:]
    assert len(audit_trail(on)) - before[0] > 20


@pytest.fixture(scope="module")
def limited(make_app, scaikey):
    setup = (("hot/db", ["one"]),)
    return Side("on", make_app(RATE_LIMITS=LOW_LIMITS, BARE_HOT_ROUTES="true"), scaikey, setup), \
        Side("off", make_app(RATE_LIMITS=LOW_LIMITS, BARE_HOT_ROUTES="false"), scaikey, setup)


def test_rate_limited_hot_requests_get_flasks_429(limited):
    on, off = limited
    statuses = []
    for method, url, kw in [("GET", "/v1/secrets/hot/db", {})] * 4 + \
            [("PUT", "/v1/secrets/hot/w", {"json": {"data": {"v": 1}}})] * 3:
        answers = [side.normalise(side.send("user", method, url, **kw)) for side in (on, off)]
        assert answers[0] == answers[1], (who, method, url, kw)
        statuses.append(answers[0][0])
    assert statuses == ["200 OK"] * 3 + ["429 TOO MANY REQUESTS"] + ["201 CREATED", "200 OK", "429 TOO MANY REQUESTS"]


def test_a_path_another_route_owns_is_left_to_flask_and_an_overlapping_pattern_refuses_to_start(make_app):
    from scaivault.api.hot_routes import HotRoutes

    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    app.add_url_rule("/v1/secrets/special/one", "special", lambda: "special", methods=["GET"])
    hot = HotRoutes(app, lambda environ, start_response: [b"flask"])
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/secrets/special/one"}
    assert hot(environ, lambda *a: None) == [b"flask"]
    app.add_url_rule("/v1/secrets/<name>/two", "pattern", lambda name: name, methods=["PUT"])
    with pytest.raises(RuntimeError, match="overlap the hot secret routes"):
        HotRoutes(app, lambda environ, start_response: [b"flask"])
