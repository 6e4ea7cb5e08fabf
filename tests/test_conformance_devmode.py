"""Issue 16 item 5: the dev token is reused or replaced (never piles up), and `scaivault dev token` mints
a token for another identity so the README's least-privilege example can be tried."""
from __future__ import annotations

import pytest

from scaivault.auth import personal_tokens
from scaivault.config import load_settings
from scaivault.devmode import DEV_TOKEN_FILE, _dev_token
from scaivault.runtime import Runtime
from tests.secrets_support import Caller, HIGH_RATE_LIMITS


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS)


@pytest.fixture
def runtime(base_env):
    rt = Runtime(load_settings(base_env))
    yield rt
    rt.close()


def _active_dev_tokens(rt) -> int:
    return rt.db.scalar("""SELECT count(*) FROM personal_tokens WHERE subject = :s AND tenant_id = :t
                           AND revoked_at IS NULL AND expires_at > now()""",
                        s=personal_tokens.DEV_SUBJECT, t=personal_tokens.DEV_TENANT)


def test_restarts_never_pile_up_dev_tokens(runtime, base_env, tmp_path, app):
    settings = load_settings(base_env)
    first = _dev_token(settings, tmp_path)
    assert (tmp_path / DEV_TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    assert _dev_token(settings, tmp_path) == first            # reused while it has a week left
    for _ in range(3):                                        # a fresh data directory: replaced, not added
        other = tmp_path / f"d{_}"
        other.mkdir()
        _dev_token(settings, other)
    assert _active_dev_tokens(runtime) == 1
    client = app.test_client()
    old = client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {first}"})
    assert old.status_code == 401 and old.get_json()["error"]["code"] == "token_revoked"
    # far more than 100 starts still start
    for _ in range(105):
        personal_tokens.issue_dev_token(runtime)
    assert _active_dev_tokens(runtime) == 1


def test_dev_token_for_another_identity_follows_the_readme_least_privilege_example(runtime, app):
    admin = Caller(app.test_client(), personal_tokens.issue_dev_token(runtime), personal_tokens.DEV_IDENTITY)
    assert admin.put("/v1/secrets/environments/prod/api/db", json={"data": {"user": "api"}}).status_code in (200, 201)
    api = Caller(app.test_client(), personal_tokens.issue_dev_identity_token(runtime, "sa:api", ["secrets:read"]),
                 "sa:api")
    me = api.get("/v1/auth/whoami").get_json()
    assert me["identity_id"] == "sa:api" and me["scopes"] == ["secrets:read"]
    denied = api.get("/v1/secrets/environments/prod/api/db")
    assert denied.status_code == 403 and denied.get_json()["error"]["code"] == "access_denied"
    policy = admin.post("/v1/policies", json={"name": "api-read-dev", "rules": [
        {"path_pattern": "environments/prod/api/*", "permissions": ["read"]}]}).get_json()
    assert admin.post(f"/v1/policies/{policy['id']}/bindings", json={
        "identity_type": "service_account", "identity_id": "sa:api"}).status_code == 201
    assert api.get("/v1/secrets/environments/prod/api/db").get_json()["data"] == {"user": "api"}
    write = api.put("/v1/secrets/environments/prod/api/db", json={"data": {}})
    assert write.status_code == 403 and write.get_json()["error"]["code"] == "insufficient_scope"
    admin.delete(f"/v1/policies/{policy['id']}?force=true")


@pytest.mark.parametrize("identity, scopes", [("root", ["secrets:read"]), ("sa:api", []),
                                              ("sa:api", ["secrets:everything"])])
def test_dev_token_refuses_bad_input(runtime, identity, scopes):
    with pytest.raises(Exception) as exc:
        personal_tokens.issue_dev_identity_token(runtime, identity, scopes)
    assert exc.value.code == "invalid_request"


def test_dev_token_command_refuses_a_directory_that_is_not_a_dev_one(tmp_path):
    from click.testing import CliRunner

    from scaivault.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["dev", "--data-dir", str(tmp_path), "token", "--identity", "sa:api",
                                              "--scopes", "secrets:read"], obj={"env": {}})
    assert result.exit_code != 0 and "not a `scaivault dev` data directory" in result.output
