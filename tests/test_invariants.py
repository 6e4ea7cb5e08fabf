"""Design invariants 7, 8, 10 and 11 (design.md section 2), checked end to end and on the source."""
from __future__ import annotations

import ast
import json
import logging
import sys
from pathlib import Path

import pytest

from scaivault.logging_setup import configure_logging
from tests.secrets_support import ADMIN_SCOPES, HIGH_RATE_LIMITS, Callers, new_tenant

ROOT = Path(__file__).resolve().parent.parent
SECRET_VALUE = "hunter2-Zq8vT1-never-logged"


@pytest.fixture
def restore_logging():
    yield
    configure_logging("warn", "text")
    logging.getLogger().handlers[-1].stream = sys.__stderr__


def test_a_secret_value_appears_in_no_log_line_error_metric_or_audit_entry(make_app, scaikey, capsys,
                                                                           restore_logging):
    app = make_app(LOG_FORMAT="json", LOG_LEVEL="debug", RATE_LIMITS=HIGH_RATE_LIMITS)
    tenant = new_tenant()
    admin = Callers(scaikey, app.test_client()).user(f"admin@{tenant}.example", tenant, role="tenant_admin",
                                                     scopes=ADMIN_SCOPES + ("audit:read",))
    capsys.readouterr()
    assert admin.put("/v1/secrets/inv/db", json={"data": {"password": SECRET_VALUE}}).status_code in (200, 201)
    assert admin.get("/v1/secrets/inv/db").get_json()["data"]["password"] == SECRET_VALUE
    # failing requests that carry the value: wrong type, bad path, cas conflict, bad option, broken JSON
    answers = [
        admin.put("/v1/secrets/inv/db", json={"data": SECRET_VALUE}),
        admin.put("/v1/secrets/INV//bad", json={"data": {"password": SECRET_VALUE}}),
        admin.put("/v1/secrets/inv/db", json={"data": {"password": SECRET_VALUE}, "options": {"cas": 7}}),
        admin.put("/v1/secrets/inv/db", json={"data": {"password": SECRET_VALUE}, "options": {"max_versions": "x"}}),
        admin.put("/v1/secrets/inv/db", data='{"data": {"password": "' + SECRET_VALUE, content_type="application/json"),
    ]
    for answer in answers:
        assert 400 <= answer.status_code < 500
        assert SECRET_VALUE not in answer.get_data(as_text=True)
    metrics = admin.get("/v1/metrics").get_data(as_text=True)
    audit = admin.get("/v1/audit/logs?path_prefix=inv/").get_json()
    logs = capsys.readouterr().err
    assert any(json.loads(line).get("logger") == "scaivault.access" for line in logs.splitlines() if line.startswith("{"))
    assert audit["logs"], "the writes and reads above were audited"
    assert SECRET_VALUE not in logs
    assert SECRET_VALUE not in metrics
    assert SECRET_VALUE not in json.dumps(audit)


_SENSITIVE = ("digest", "signature", "token_hash", "hmac", "mac", "commitment", "pin", "secret")


def _names(node: ast.AST) -> set[str]:
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id.lower())
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr.lower())
    return found


def _equality_on_sensitive_values(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    offences = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or not any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(o, ast.Constant) for o in operands):
            continue   # comparing with a literal (a code, a type name) is not a secret comparison
        names = set().union(*(_names(o) for o in operands))
        if any(word in name for name in names for word in _SENSITIVE):
            offences.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return offences


def test_tokens_hashes_and_signatures_are_compared_in_constant_time_only():
    sources = sorted((ROOT / "scaivault").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py"))
    offences = [o for path in sources for o in _equality_on_sensitive_values(path)]
    assert offences == [], f"use hmac.compare_digest, not ==, for secret material: {offences}"


def test_the_constant_time_check_catches_a_plain_comparison(tmp_path):
    bad = ROOT / "tests" / "_invariant_probe_tmp.py"
    bad.write_text("def check(expected_digest, given):\n    return expected_digest == given\n")
    try:
        assert _equality_on_sensitive_values(bad) == ["tests/_invariant_probe_tmp.py:2"]
    finally:
        bad.unlink()


# ----------------------------------------------------------------------------- invariant 10
# Identity-owned tables and the columns that identify their owner: never identity_id (a name).
_IDENTITY_OWNED = {"identity_role_assignments": "principal", "personal_tokens": "subject"}


def _owner_lookups_by_name(path: Path) -> list[str]:
    """SQL strings that select, update or delete identity-owned rows by `identity_id` (a name, not the owner)."""
    offences = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            sql = " ".join(node.value.split())
            for table in _IDENTITY_OWNED:
                if table in sql and "WHERE" in sql.upper() and "identity_id =" in sql.split("WHERE", 1)[-1]:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return offences


def test_identity_owned_records_are_never_looked_up_by_a_name():
    sources = sorted((ROOT / "scaivault").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py"))
    offences = [o for path in sources for o in _owner_lookups_by_name(path)]
    assert offences == [], f"key identity-owned rows on the principal (sub + tenant), not identity_id: {offences}"


def test_the_name_lookup_check_catches_a_lookup_by_email(tmp_path):
    bad = ROOT / "tests" / "_invariant_probe_tmp.py"
    bad.write_text('SQL = "SELECT role FROM identity_role_assignments WHERE identity_id = :i"\n')
    try:
        assert _owner_lookups_by_name(bad) == ["tests/_invariant_probe_tmp.py:1"]
    finally:
        bad.unlink()


def test_twins_sharing_every_name_share_no_identity_owned_record(make_app, scaikey):
    """Two users (and two apps) of different partners with identical names: roles, tokens, buckets and
    audit actors stay apart, and a token minted from a token neither outlives nor outranks it."""
    from secrets import token_hex

    from scaivault.identity import store

    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    client, rt = app.test_client(), app.extensions["scaivault"]
    tag = token_hex(3)
    email = f"twin{tag}@same.example"
    twins = []
    for n, (tenant, partner) in enumerate(((f"tnt_a1{tag}", f"ptn_a{tag}"), (f"tnt_b1{tag}", f"ptn_b{tag}"))):
        with rt.db.transaction() as s:
            store.upsert_tenant(s, {"id": tenant, "partner_id": partner})
            store.upsert_user(s, {"id": f"usr_twin{n}{tag}", "tenant_id": tenant, "email": email, "display_name": "Twin"})
        twins.append(scaikey.mint(sub=f"usr_twin{n}{tag}", tenant_id=tenant, partner_id=partner,
                                  scopes=("secrets:read", "identity:read", "identity:admin"), email=email, name="Twin"))
    auth = [{"Authorization": f"Bearer {t}"} for t in twins]
    me = [client.get("/v1/auth/whoami", headers=h).get_json() for h in auth]
    assert me[0]["identity_id"] == me[1]["identity_id"]            # the same name ...
    superadmin = scaikey.mint(sub="usr_inv10" + tag, tenant_id=f"tnt_a1{tag}", role="super_admin",
                              scopes=("identity:admin", "identity:read"))
    assert client.put(f"/v1/identity/users/usr_twin0{tag}/roles", json={"roles": ["tenant_admin"]},
                      headers={"Authorization": f"Bearer {superadmin}"}).status_code == 200
    rt.authenticator.invalidate()
    assert [client.get("/v1/auth/whoami", headers=h).get_json()["roles"] for h in auth] == [["tenant_admin"], []]
    pat = client.post("/v1/auth/tokens", json={"name": "t", "scopes": ["secrets:read"], "expires_in": "2d"},
                      headers=auth[0]).get_json()
    assert client.get("/v1/auth/tokens", headers=auth[1]).get_json()["total"] == 0
    actors = {r["extra_data"]["actor"] for r in rt.db.query(
        "SELECT extra_data FROM audit_log WHERE identity_id = :i AND extra_data ? 'actor'", i=f"user:{email}")}
    assert {f"tnt_a1{tag}/usr_twin0{tag}"} <= actors and f"tnt_b1{tag}/usr_twin1{tag}" not in actors
    # a token minted from that token: no longer-lived, no higher-ranked, gone with it
    child = client.post("/v1/auth/tokens", json={"name": "c", "scopes": ["secrets:read"], "expires_in": "366d"},
                        headers={"Authorization": f"Bearer {pat['token']}"}).get_json()
    assert child["expires_at"] <= pat["expires_at"]
    assert client.delete(f"/v1/auth/tokens/{pat['id']}", headers=auth[0]).status_code == 200
    assert client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {child['token']}"}).status_code == 401
    orphans = rt.db.scalar("""SELECT count(*) FROM personal_tokens c JOIN personal_tokens p ON p.id = c.parent_id
                              WHERE c.expires_at > p.expires_at OR (p.revoked_at IS NOT NULL AND c.revoked_at IS NULL)""")
    assert orphans == 0


# ----------------------------------------------------------------------------- invariant 11
def test_every_tenant_with_sealed_data_keeps_the_partner_it_was_sealed_under(make_app, scaikey):
    """Whatever ScaiKey later says about a tenant's partner (event, sync, token), the cache's partner
    stays the one the tenant's data is bound to, nothing is sealed under an empty partner, and
    every version still opens."""
    from secrets import token_hex

    from scaivault.identity import store

    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS)
    client, rt = app.test_client(), app.extensions["scaivault"]
    tenant, tag = "tnt_inv11" + token_hex(3), token_hex(3)
    headers = lambda partner=None: {"Authorization": "Bearer " + scaikey.mint(   # noqa: E731
        sub="usr_inv11" + tag, tenant_id=tenant, partner_id=partner, role="tenant_admin",
        scopes=("secrets:read", "secrets:write"))}
    assert client.put("/v1/secrets/k", json={"data": {"v": "0"}}, headers=headers()).status_code == 409
    assert client.put("/v1/secrets/k", json={"data": {"v": "1"}}, headers=headers("ptn_inv11")).status_code == 201
    with rt.db.transaction() as s:
        store.upsert_tenant(s, {"id": tenant, "partner_id": "ptn_elsewhere"})            # what a sync or event applies
    rt.authenticator.invalidate()
    assert client.put("/v1/secrets/k", json={"data": {"v": "2"}}, headers=headers("ptn_claimed")).status_code == 200
    for version in (1, 2):
        assert client.get(f"/v1/secrets/k?version={version}", headers=headers()).status_code == 200
    keys = rt.db.query("SELECT DISTINCT partner_id FROM tenant_keys WHERE tenant_id = :t", t=tenant)
    assert keys == [{"partner_id": "ptn_inv11"}]
    assert rt.db.scalar("SELECT partner_id FROM identity_tenants WHERE id = :t", t=tenant) == "ptn_inv11"
