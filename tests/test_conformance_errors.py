"""Issue 16 item 2: error codes as the catalogue says, and one complete list of them.

The list of codes is STATUS_BY_CODE; the source, /v1/openapi.json and docs/errors.md must agree with it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import scaivault
from scaivault import errors
from scaivault.errors import STATUS_BY_CODE, ScaiVaultError
from tests.secrets_support import Callers, error_code, new_tenant

ROOT = Path(__file__).resolve().parent.parent
# ScaiVaultError("code", ...), any *Error("code", ...) helper, `code = "..."` class attributes and code="..." kwargs
RAISED_RE = re.compile(r'''(?<!Assertion)(?<!Value)(?<!Type)(?:Error|_error)\(\s*["']([a-z][a-z0-9_]+)["']|\bcode\s*=\s*["']([a-z][a-z0-9_]+)["']''')
CLIENT_SIDE = ("client_cli",)      # the CLI's own exit reasons, never sent by the server


def raised_codes() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in Path(scaivault.__file__).parent.rglob("*.py"):
        if any(part in CLIENT_SIDE for part in path.parts):
            continue
        for m in RAISED_RE.finditer(path.read_text()):
            found.setdefault(m.group(1) or m.group(2), str(path.relative_to(ROOT)))
    return found


def documented_codes() -> dict[str, int]:
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\d{3}) \|", (ROOT / "docs" / "errors.md").read_text(), re.M)
    return {code: int(status) for code, status in rows}


def test_every_raised_code_is_in_the_catalogue():
    unknown = {code: where for code, where in raised_codes().items() if code not in STATUS_BY_CODE}
    assert not unknown, f"codes raised but missing from STATUS_BY_CODE: {unknown}"


def test_every_error_class_code_is_in_the_catalogue():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ScaiVaultError)]
    assert len(classes) > 3
    for cls in classes:
        assert cls.code in STATUS_BY_CODE, cls


def test_docs_errors_table_is_the_catalogue():
    assert documented_codes() == STATUS_BY_CODE


def test_openapi_lists_every_code_with_its_status(client):
    doc = client.get("/v1/openapi.json").get_json()
    assert doc["x-error-codes"] == STATUS_BY_CODE
    listed = {}
    for name, response in doc["components"]["responses"].items():
        for code in response["x-error-codes"]:
            listed[code] = int(name[1:])
    assert listed == STATUS_BY_CODE


# ------------------------------------------------------------------ the documented codes on the wire
@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


def test_missing_or_malformed_authorization_is_authentication_required(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"Authorization": "token"}):
        resp = client.get("/v1/secrets/app/db", headers=headers)
        assert resp.status_code == 401 and error_code(resp) == "authentication_required", headers


def test_a_token_failing_verification_keeps_its_specific_code(client, scaikey):
    forged = scaikey.mint(sub="usr_forged", tenant_id=new_tenant(), partner_id="ptn_test")[:-6] + "AAAAAA"
    for token in ("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", forged):
        resp = client.get("/v1/secrets/app/db", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and error_code(resp) == "token_invalid"
    expired = scaikey.mint(sub="usr_exp", tenant_id=new_tenant(), partner_id="ptn_test", expires_in=-120)
    resp = client.get("/v1/secrets/app/db", headers={"Authorization": f"Bearer {expired}"})
    assert resp.status_code == 401 and error_code(resp) == "token_expired"


def test_cross_tenant_is_tenant_access_denied(callers):
    caller = callers.admin(new_tenant())
    resp = caller.get("/v1/secrets/app/db", headers={"X-Tenant-ID": new_tenant()})
    assert resp.status_code == 403 and error_code(resp) == "tenant_access_denied"


def test_an_unknown_route_is_not_found(client):
    for url in ("/v1/no-such-thing", "/nothing/here", "/v1/policies/x/y/z/w"):
        resp = client.get(url)
        assert resp.status_code == 404 and error_code(resp) == "not_found", url
