"""The one authorisation guard of the PKI, ACME and DNS-provider blueprints (scope AND policy).

The pipeline checks a view's declared scope; these helpers add the policy decision on the
object's PKI path, the either-scope check of read views, listing filters and read audits.
"""
from __future__ import annotations

from typing import Any, Callable

from flask import g, request

from ..audit import record_now
from ..auth import require_scope
from ..policy.access import request_context
from ..services.secrets import SecretOwner
from .auditing import entry_for_request
from .http import runtime


def owner() -> SecretOwner:
    """The caller's tenant as the owner of PKI objects and of the secrets they write."""
    return SecretOwner(g.tenant.partner_id or "", g.tenant.tenant_id)


def actor() -> str:
    return g.identity.identity_id


def require_any_scope(*scopes: str) -> None:
    if not any(g.identity.has_scope(s) for s in scopes):
        require_scope(g.identity, scopes[0])


def visible(permission: str) -> Callable[[str], bool]:
    """path -> whether the caller may `permission` it (for filtering listings)."""
    policies = runtime().access.tenant_policies(g.identity, g.tenant)
    if policies is None:
        return lambda path: True
    ctx = request_context(g.identity, request.remote_addr)
    return lambda path: policies.allows(path, permission, ctx)


def audit_read(path: str | None, **extra: Any) -> None:
    """A durable pki_read audit entry before the answer is sent."""
    record_now(runtime(), entry_for_request("pki_read", secret_path=path, extra=extra))
