"""Who is calling: the Identity derived from a bearer token, and the tenant a request acts in."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

ADMIN_ROLES = ("super_admin", "partner_admin", "tenant_admin")


def user_identity_id(email: str) -> str:
    """`user:<email>`, lower-cased: email addresses are compared case-insensitively everywhere."""
    return "user:" + email.strip().lower()


def principal_key(subject: str, tenant_id: str | None) -> str:
    """The immutable, tenant-qualified key of an identity: `<tenant_id>/<sub>` (`-/<sub>` without a tenant).

    Every identity-owned record (role grants, personal tokens, rate-limit buckets, the audit
    actor) is keyed on it; `user:<email>` and `sa:<name>` are only names for policy bindings.
    """
    return f"{tenant_id or '-'}/{subject}"


@dataclass(frozen=True)
class RoleGrant:
    """One admin role and its reach: partner_id for partner_admin, tenant_id for tenant_admin."""

    role: str
    partner_id: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class Identity:
    """An authenticated caller (spec/10 section 2.4 and spec/15 section 2.4)."""

    identity_id: str                      # the binding name: user:<email> | sa:<name> | user:<sub>
    identity_type: str                    # user | service_account
    subject: str                          # the token's sub (or the PAT's owner subject)
    tenant_id: str | None                 # the token's home tenant
    partner_id: str | None
    scopes: frozenset[str]
    groups: tuple[str, ...] = ()          # group:<name>
    roles: frozenset[str] = frozenset()   # admin roles
    display_name: str | None = None
    mfa_verified_at: datetime | None = None
    token_kind: str = "jwt"               # jwt | pat
    token_id: str | None = None           # jti, or the PAT id
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    claims: dict = field(default_factory=dict, compare=False, repr=False)
    grants: tuple[RoleGrant, ...] = ()    # roles with their reach (see admin_over)
    acting_for: str | None = None         # act.sub of an exchanged token (recorded in audit)

    @property
    def principal(self) -> str:
        """The immutable key (sub + home tenant) every identity-owned record is stored under."""
        return principal_key(self.subject, self.tenant_id)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_super_admin(self) -> bool:
        return "super_admin" in self.roles

    def admin_over(self, tenant_id: str | None, partner_id: str | None) -> bool:
        """True if an admin role of this identity reaches the tenant (or, tenant_id None, the partner).

        Decision (issue 4): an admin role grants every permission within its reach, still
        limited by the token's scopes; everyone else needs a policy.
        """
        for grant in self.grants:
            if grant.role == "super_admin":
                return True
            if grant.role == "partner_admin" and partner_id and grant.partner_id == partner_id:
                return True
            if grant.role == "tenant_admin" and tenant_id and grant.tenant_id == tenant_id:
                return True
        return False


@dataclass(frozen=True)
class TenantContext:
    """The tenant a request acts in (spec/10 section 4.1) and how it was chosen."""

    tenant_id: str
    partner_id: str | None
    source: str = "token"                 # path | header | token
