"""Helpers for the client tests (CLI, SDK, MCP): one served ScaiVault per module and tokens for it."""
from __future__ import annotations

import secrets as pyrandom

import pytest

from tests.foundation_support import ServedInstance, get_ready
from tests.secrets_support import ADMIN_SCOPES

ALL_SCOPES = ADMIN_SCOPES + ("audit:read", "audit:export")


def serve(base_env: dict, **overrides: str) -> ServedInstance:
    instance = ServedInstance({**base_env, **overrides}).start()
    assert get_ready(instance.url).status_code == 200, "served instance never became ready"
    return instance


@pytest.fixture(scope="module")
def vault(base_env):
    """One served instance per test module (import this fixture into the module)."""
    instance = serve(base_env)
    yield instance
    instance.stop()


def new_tenant() -> str:
    return "tnt_cl" + pyrandom.token_hex(4)


def admin_token(scaikey, tenant: str, scopes=ALL_SCOPES) -> str:
    """A tenant admin's JWT: every secrets, policies and audit scope."""
    return scaikey.mint(sub="usr_" + pyrandom.token_hex(6), email=f"admin-{pyrandom.token_hex(3)}@{tenant}.example",
                        tenant_id=tenant, partner_id="ptn_test", scopes=scopes, role="tenant_admin")


def user_token(scaikey, tenant: str, scopes=("secrets:read", "secrets:list")) -> str:
    """A plain user's JWT with no policy bound: scopes but no grants."""
    return scaikey.mint(sub="usr_" + pyrandom.token_hex(6), email=f"user-{pyrandom.token_hex(3)}@{tenant}.example",
                        tenant_id=tenant, partner_id="ptn_test", scopes=scopes)
