"""Design invariants 7 and 8 (design.md section 2), checked end to end and on the source."""
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
