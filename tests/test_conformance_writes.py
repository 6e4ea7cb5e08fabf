"""Issue 16 item 7: PUT answers the documented body; a write without `expires_in` keeps the expiry,
`expires_in: null` clears it."""
from __future__ import annotations

import pytest

from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def admin(app, scaikey):
    return Callers(scaikey, app.test_client()).admin(new_tenant())


@pytest.mark.parametrize("extra", [{}, {"max_versions": 5}], ids=["one-statement", "locked"])
def test_expiry_is_kept_unless_named(admin, extra):
    first = admin.put("/v1/secrets/exp/db", json={"data": {"v": 1}, "options": {"expires_in": "30d", **extra}})
    assert first.status_code == 201
    body = first.get_json()
    assert body["version"] == 1 and body["expires_at"] and "data" not in body
    assert {"created_at", "updated_at", "metadata"} <= set(body)
    kept = admin.put("/v1/secrets/exp/db", json={"data": {"v": 2}, "options": {**extra}})
    assert kept.status_code == 200 and kept.get_json()["version"] == 2
    assert kept.get_json()["expires_at"] == body["expires_at"]
    changed = admin.put("/v1/secrets/exp/db", json={"data": {"v": 3}, "options": {"expires_in": "1d", **extra}})
    assert changed.get_json()["expires_at"] < body["expires_at"]
    cleared = admin.put("/v1/secrets/exp/db", json={"data": {"v": 4}, "options": {"expires_in": None, **extra}})
    assert cleared.status_code == 200 and cleared.get_json()["expires_at"] is None
    assert admin.get("/v1/secrets/exp/db:metadata").get_json()["expires_at"] is None


def test_secret_policy_id_is_accepted_and_other_unknown_fields_are_not(admin):
    unknown = admin.put("/v1/secrets/exp/x", json={"data": {}, "colour": "blue"})
    assert unknown.status_code == 422 and error_code(unknown) == "validation_error"
    named = admin.put("/v1/secrets/exp/x", json={"data": {}, "secret_policy_id": "sp_missing"})
    assert named.status_code != 422


def test_a_rest_style_sub_resource_guess_gets_a_hint_naming_the_colon_form(admin, app, scaikey):
    admin.put("/v1/secrets/app/db", json={"data": {"k": "v"}})
    resp = admin.get("/v1/secrets/app/db/versions")
    assert resp.status_code == 404 and error_code(resp) == "secret_not_found"
    err = resp.get_json()["error"]
    assert ":versions" in err["message"] and err["details"]["hint"] == "app/db:versions"
    plain = admin.get("/v1/secrets/app/none/versions")          # parent missing: the plain 404
    assert plain.status_code == 404 and "hint" not in (plain.get_json()["error"].get("details") or {})
    # a caller who may not read or list the parent learns nothing about it
    from tests.secrets_support import grant
    tenant = admin.identity_id.split("@")[1].removesuffix(".example")
    user = Callers(scaikey, app.test_client()).user("guess@x.example", tenant)
    grant(admin, user.identity_id, [{"path_pattern": "app/db/*", "permissions": ["read"]}])
    blind = user.get("/v1/secrets/app/db/versions")
    assert blind.status_code == 404 and "hint" not in (blind.get_json()["error"].get("details") or {})
