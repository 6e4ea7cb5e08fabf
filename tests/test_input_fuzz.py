"""Invariant 9 over the whole API (issue 9 F13): malformed input gets a 4xx JSON envelope, never a 500.

The property-based test walks /v1/openapi.json, so an endpoint added later is fuzzed without
editing this file: every path parameter, documented query parameter and body field (drawn
from the body model's JSON schema) gets hostile values (NUL, lone surrogates, Unicode digits,
integers beyond PostgreSQL's ranges, huge durations, out-of-range timestamps, forged cursors).
It runs derandomized with a bounded number of examples so the default run stays short.
"""
from __future__ import annotations

import base64
import json
import secrets
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from scaivault.config import DatabaseURL
from scaivault.migrate import MigrationRunner
from tests.secrets_support import HIGH_RATE_LIMITS

ALL_SCOPES = ("secrets:read", "secrets:write", "secrets:delete", "secrets:list", "secrets:rotate",
              "policies:read", "policies:write", "audit:read", "audit:export", "identity:read", "identity:admin",
              "admin")
# operations that change process-wide state outside this test's database (root key rotation
# rewrites the session's KMS key material; a sync runs against the shared stand-in)
SKIPPED = {("post", "/v1/system/keys/rotate"), ("post", "/v1/identity/sync")}


def _b64(doc) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


NASTY_STRINGS = [
    "", "\x00", "a\x00b", "\ud800", "x\udfffy", "\u00b2", "\u0663", "1\u00b2", "0\u00b2:00", "\U0001d7d9",
    "2147483648", "9191813186", "-1", "0", "99999999999999999999999", "1e400", "NaN", "true",
    "99999999999d", "99999999999w", "5d\n", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
    "not-a-date", _b64({"after": "\u0000"}), _b64({"after": "\ud800"}), _b64(["\u0000", "log_x"]),
    _b64(["2026-01-01T00:00:00.000000Z", "log_\u0000"]), _b64({"after": 7}), "AA", "====", "%00",
    "a" * 600, "../../etc/passwd", "a//b", "/", "user:\x00", "group:\ud800", "t=\u00b2,v1=00",
]
# query names read by views without being documented on every operation; each operation gets some
COMMON_QUERY = ["limit", "cursor", "page", "page_size", "version", "from", "to", "expires_within", "prefix",
                "delimiter", "status", "partner_id", "tenant_id", "action", "identity_id", "request_id", "success",
                "permanent", "include_deleted", "tag", "q"]
nasty_text = st.one_of(st.sampled_from(NASTY_STRINGS),
                       st.text(alphabet=st.sampled_from("a0/:_-.*?\x00\ud800\u00b2\u0663 Z+%"), max_size=12))
nasty_ints = st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63, -2**63 - 1, 10**30, True, False, 1.5, "2"])


def nasty_json(depth: int = 2):
    leaves = st.one_of(st.none(), st.booleans(), nasty_ints, nasty_text)
    if depth <= 0:
        return leaves
    return st.one_of(leaves, st.lists(nasty_json(depth - 1), max_size=3),
                     st.dictionaries(nasty_text, nasty_json(depth - 1), max_size=3))


def from_schema(schema: dict, components: dict, depth: int = 3):
    """Values shaped like `schema` but hostile in their leaves (and sometimes not shaped at all)."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    if depth <= 0:
        return nasty_json(0)
    choices = [nasty_json(1)]
    for alt in schema.get("anyOf", []) + schema.get("oneOf", []):
        choices.append(from_schema(alt, components, depth - 1))
    kind = schema.get("type")
    if "properties" in schema:
        props = schema["properties"]
        choices.append(st.fixed_dictionaries({}, optional={
            name: from_schema(sub, components, depth - 1) for name, sub in props.items()}))
    elif kind == "array":
        choices.append(st.lists(from_schema(schema.get("items", {}), components, depth - 1), min_size=1, max_size=3))
    elif kind == "object":
        choices.append(st.dictionaries(nasty_text, nasty_json(1), max_size=3))
    elif kind == "integer":
        choices.append(nasty_ints)
    elif kind == "string":
        choices.append(st.sampled_from(schema.get("enum", [])) if schema.get("enum") else nasty_text)
    return st.one_of(*choices)


@pytest.fixture(scope="module")
def fuzz(make_app, databases, scaikey):
    """An app on its own database, a super_admin caller with every scope, and a secret and a policy to aim at."""
    url = databases.create()
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    app = make_app(DATABASE_URL=url, RATE_LIMITS=HIGH_RATE_LIMITS)
    client = app.test_client()
    tenant = "tnt_fz_" + secrets.token_hex(4)
    token = scaikey.mint(sub="usr_fz_" + secrets.token_hex(4), email=f"root@{tenant}.example", tenant_id=tenant,
                         partner_id="ptn_fz", scopes=ALL_SCOPES, role="super_admin")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.put("/v1/secrets/fz/a", json={"data": {"k": "v"}}, headers=headers).status_code == 201
    policy = client.post("/v1/policies", headers=headers, json={
        "name": "fz", "rules": [{"path_pattern": "fz/*", "permissions": ["read"]}]}).get_json()
    document = client.get("/v1/openapi.json").get_json()
    operations = []
    for path, methods in sorted(document["paths"].items()):
        for method, op in sorted(methods.items()):
            if (method, path) in SKIPPED:
                continue
            params = op.get("parameters", [])
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            operations.append((method, path, params, body))
    good = {"path": ["fz/a", "fz"], "policy_id": [policy["id"]], "tenant_id": [tenant], "identity_type": ["user"],
            "identity_id": ["user:root@x.example"], "token_id": ["pat_1"], "export_id": ["exp_1"], "number": ["1"]}
    return Target(client, headers, operations, document["components"]["schemas"], good)


class Target(tuple):
    """The fuzz fixture's values, with a short repr (hypothesis prints it on failure)."""

    def __new__(cls, *values):
        return super().__new__(cls, values)

    def __repr__(self) -> str:
        return f"<fuzz target: {len(self[2])} operations>"


def _url(path: str, params: list[dict], values: dict[str, str], query: dict[str, str]) -> str:
    for param in params:
        if param["in"] == "path":
            safe = "/" if param.get("x-multi-segment") else ""
            path = path.replace("{" + param["name"] + "}",
                                quote(values[param["name"]], safe=safe, errors="surrogatepass") or "x")
    if query:
        path += "?" + "&".join(f"{quote(k, safe='', errors='surrogatepass')}={quote(v, safe='', errors='surrogatepass')}"
                               for k, v in query.items())
    return path


def assert_envelope(resp, what) -> None:
    assert resp.status_code < 500, (what, resp.status_code, resp.data[:300])
    if resp.status_code >= 400:
        body = resp.get_json(silent=True)
        assert isinstance(body, dict) and body.get("error", {}).get("code"), (what, resp.status_code, resp.data[:300])
        assert body["error"]["request_id"] == resp.headers["X-Request-ID"], what


@settings(max_examples=600, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_endpoint_answers_hostile_parameters_and_bodies_with_an_envelope_never_a_500(fuzz, data):
    client, headers, operations, components, good = fuzz
    method, path, params, body_schema = data.draw(st.sampled_from(operations), label="operation")
    values, query = {}, {}
    for param in params:
        name = param["name"]
        if param["in"] == "path":
            values[name] = data.draw(st.sampled_from(good.get(name, ["x"])) | nasty_text, label=name)
        elif data.draw(st.booleans(), label=f"send {name}"):
            query[name] = data.draw(nasty_text, label=name)
    for name in data.draw(st.lists(st.sampled_from(COMMON_QUERY), max_size=3, unique=True), label="more query"):
        query.setdefault(name, data.draw(nasty_text, label=name))
    url = _url(path, params, values, query)
    if data.draw(st.integers(0, 9), label="tenant prefix") == 0:   # every route is also under /v1/t/{tenant}/
        url = "/v1/t/" + quote(data.draw(nasty_text, label="prefix tenant"), safe="", errors="surrogatepass") + url[3:]
    kwargs = {}
    if body_schema is not None:
        kwargs["data"] = json.dumps(data.draw(from_schema(body_schema, components), label="body"))
        kwargs["content_type"] = "application/json"
    resp = client.open(url, method=method.upper(), headers=headers, **kwargs)
    assert_envelope(resp, (method, url, kwargs.get("data", "")[:300]))


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signature=st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\r\n"),
                         max_size=40))
def test_hostile_webhook_signature_headers_are_refused_with_an_envelope(fuzz, signature):
    client = fuzz[0]
    resp = client.post("/v1/identity/webhooks/scaikey", data=b"{}",
                       headers={"X-ScaiKey-Signature": signature, "Content-Type": "application/json"})
    assert_envelope(resp, signature)
    assert resp.status_code == 400


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_type=st.sampled_from(["user.created", "user.updated", "tenant.created", "group.created",
                                   "group.member_added", "application.created", "user.suspended"]) | nasty_text,
       data=st.dictionaries(st.sampled_from(["id", "email", "tenant_id", "partner_id", "name", "status", "group_id",
                                             "user_id", "member_type"]) | nasty_text, nasty_json(1), max_size=5),
       event_id=nasty_text)
def test_signed_webhooks_with_hostile_content_never_get_a_500(fuzz, scaikey, event_type, data, event_id):
    """A body ScaiKey signed is trusted for authenticity, not for shape: odd content is acknowledged or refused."""
    client = fuzz[0]
    body = json.dumps({"event_id": event_id, "event_type": event_type, "data": data}).encode()
    resp = client.post("/v1/identity/webhooks/scaikey", data=body,
                       headers={"Content-Type": "application/json", "X-ScaiKey-Signature": scaikey.sign(body)})
    assert_envelope(resp, (event_type, data))
