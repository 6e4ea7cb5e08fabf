"""Bearer token -> Identity, with the per-process caches that keep the hot path cheap.

Two caches, both keyed by SHA-256 of the token: verified JWT claims (valid until `exp`,
never re-verified) and derived identities (dropped whenever the cluster-wide auth epoch
moves: PAT revocation, role change, identity-cache change).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from ..errors import ScaiVaultError
from ..identity import store
from . import personal_tokens, roles
from .epoch import AuthEpoch
from .exchange import PREFIX as EXCHANGED_TOKEN_PREFIX
from .identity import Identity, RoleGrant, principal_key, user_identity_id
from .jwks import JwksCache
from .scaikey_tokens import CLOCK_SKEW_SECONDS, ScaiKeyTokenVerifier
from .scopes import parse_scope_claim
from .tenancy import TENANT_ID_RE

log = logging.getLogger("scaivault.auth")

MAX_CACHED_TOKENS = 50_000
MAX_IDENTITY_AGE_SECONDS = 60.0   # safety net should an epoch bump ever be lost
INACTIVE_STATUSES = ("SUSPENDED", "DISABLED", "DELETED", "INACTIVE", "LOCKED", "DEACTIVATED")


def _utc(ts: float | int | None) -> datetime | None:
    if not isinstance(ts, (int, float)):
        return None
    return datetime.fromtimestamp(ts, timezone.utc)


def _printable(text: str, limit: int) -> bool:
    return 0 < len(text) <= limit and text.isprintable()


def _application_within(app: dict, tenant_id: str | None, partner_id: str | None) -> bool:
    """A cached application may name a token only if it lives where the token does."""
    if app["tenant_id"]:
        return app["tenant_id"] == tenant_id
    if app["partner_id"]:
        return app["partner_id"] == partner_id
    return True   # a GLOBAL application


def user_is_inactive(row: dict | None) -> bool:
    return row is not None and (row["deleted_at"] is not None or (row["status"] or "").upper() != "ACTIVE")


class Authenticator:
    """Owned by the Runtime (one per process); thread- and greenlet-safe."""

    def __init__(self, runtime):
        self.runtime = runtime
        settings = runtime.settings
        self.jwks = JwksCache(settings.scaikey_url, settings.scaikey_jwks_url)
        self.verifier = ScaiKeyTokenVerifier(self.jwks, settings.scaikey_url, settings.scaikey_audience,
                                             tenant_slug=self._tenant_slug)
        self.epoch = AuthEpoch(lambda: runtime.redis)
        self._claims: dict[bytes, tuple[dict, float]] = {}
        # identity, valid_until, cached_at, the epoch it was derived under
        self._identities: dict[bytes, tuple[Identity, float, float, object]] = {}
        self._tenants: dict[str, tuple[dict | None, float]] = {}
        self._seen_epoch: object = None
        self._bootstrapped: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ caches
    def _sync_epoch(self) -> None:
        current = self.epoch.current()
        if current != self._seen_epoch:
            with self._lock:
                self._identities.clear()
                self._tenants.clear()
                self._seen_epoch = current

    def invalidate(self) -> None:
        """Drop derived identities here and (through the epoch) in every other process."""
        self.epoch.bump()
        with self._lock:
            self._identities.clear()
            self._tenants.clear()

    @staticmethod
    def _bounded_put(cache: dict, key, value) -> None:
        if len(cache) >= MAX_CACHED_TOKENS:
            cache.clear()  # crude but bounded; a refill costs one verification per token
        cache[key] = value

    # ------------------------------------------------------------------ entry point
    def authenticate(self, token: str, *, introspection: bool = False) -> Identity:
        """The Identity of a bearer token; `introspection` (someone else's token) neither caches
        the result nor counts as that identity's own request (no bootstrap promotion)."""
        key = hashlib.sha256(token.encode()).digest()
        self._sync_epoch()
        epoch = self._seen_epoch
        now = time.time()
        hit = self._identities.get(key)
        if hit is not None:
            identity, valid_until, cached_at, derived_under = hit
            if now < valid_until and now - cached_at < MAX_IDENTITY_AGE_SECONDS and derived_under == epoch:
                return identity
            self._identities.pop(key, None)
            if now >= valid_until:
                raise ScaiVaultError("token_expired", "the token has expired")
        if token.startswith(personal_tokens.PREFIX):
            identity, valid_until = self._from_personal_token(token)
        elif token.startswith(EXCHANGED_TOKEN_PREFIX):
            identity, valid_until = self.runtime.token_exchange.identity_for_token(token)
        elif token.startswith("eyJ"):
            claims, valid_until = self._verified_claims(key, token)
            identity = self._from_claims(claims, bootstrap=not introspection)
        else:
            raise ScaiVaultError("authentication_required",
                                 "the bearer token is neither a ScaiKey JWT nor a personal access token (skt_)")
        if not introspection:
            # tagged with the epoch seen before deriving: a change committed meanwhile makes it a miss
            self._bounded_put(self._identities, key, (identity, valid_until, now, epoch))
        return identity

    def peek(self, token: str) -> Identity | None:
        """The identity for a token, or None when it is not active (introspection)."""
        try:
            return self.authenticate(token, introspection=True)
        except ScaiVaultError as exc:
            if exc.status == 401:
                return None
            raise

    # ------------------------------------------------------------------ JWT
    def _verified_claims(self, key: bytes, token: str) -> tuple[dict, float]:
        now = time.time()
        hit = self._claims.get(key)
        if hit is not None:
            claims, valid_until = hit
            if now < valid_until:
                return claims, valid_until
            self._claims.pop(key, None)
            raise ScaiVaultError("token_expired", "the token has expired")
        claims = self.verifier.verify(token)
        valid_until = float(claims["exp"]) + CLOCK_SKEW_SECONDS
        self._bounded_put(self._claims, key, (claims, valid_until))
        return claims, valid_until

    def _tenant_slug(self, tenant_id: str) -> str | None:
        row = self.tenant(tenant_id)
        return row["slug"] if row else None

    def _from_claims(self, claims: dict[str, Any], *, bootstrap: bool = True) -> Identity:
        """Identity derivation of spec/15 section 2.4."""
        sub = claims["sub"]
        tenant_id = claims.get("tenant_id") if isinstance(claims.get("tenant_id"), str) else None
        partner_id = claims.get("partner_id") if isinstance(claims.get("partner_id"), str) else None
        # ids end up in the cache (just-in-time rows) and in URLs: refuse shapes no ScaiKey id has
        for value in (tenant_id, partner_id):
            if value is not None and not TENANT_ID_RE.match(value):
                raise ScaiVaultError("token_invalid", "the token carries a malformed tenant or partner id")
        if not _printable(sub, 256):
            raise ScaiVaultError("token_invalid", "the token's subject is malformed")
        is_service = claims.get("token_type") == "client_credentials"
        raw_groups = claims.get("groups") if isinstance(claims.get("groups"), list) else []
        groups: list[str] = [g if g.startswith("group:") else "group:" + g
                             for g in raw_groups if isinstance(g, str) and _printable(g, 128)]
        mfa_at = None
        amr = claims.get("amr")
        if isinstance(amr, list) and {"mfa", "otp", "hwk", "totp", "webauthn"} & set(amr):
            mfa_at = _utc(claims.get("auth_time") or claims.get("iat"))
        tenant_row = None
        with self.runtime.db.transaction() as s:
            if tenant_id:
                tenant_row = store.tenant(s, tenant_id)
                if tenant_row is None or (tenant_row["partner_id"] is None and partner_id):
                    # a partner claim fills in a partner the cache does not know; it never replaces one
                    tenant_row = store.ensure_tenant_just_in_time(s, tenant_id, partner_id)
                partner_id = partner_id or tenant_row["partner_id"]
            if is_service:
                client_id = claims.get("client_id") if isinstance(claims.get("client_id"), str) else sub
                app = store.application_by_client_id(s, client_id)
                if app is not None and not _application_within(app, tenant_id, partner_id):
                    app = None   # a name is resolved within the caller's tenant (or partner) only
                name = (app and (app["slug"] or app["name"])) or client_id
                identity_id, identity_type, display = "sa:" + name, "service_account", name
            else:
                user = store.user(s, sub)
                if user_is_inactive(user):
                    raise ScaiVaultError("token_revoked", "the user behind this token is suspended or removed")
                claimed = claims.get("email") if isinstance(claims.get("email"), str) and claims.get("email") else None
                if claimed is not None and not _printable(claimed, 320):
                    raise ScaiVaultError("token_invalid", "the token's email claim is malformed")
                # spec/15 2.4: the cached user row wins; the claim only names a user the cache has not seen
                email = (user and user["email"]) or claimed
                identity_id = user_identity_id(email) if email else "user:" + sub
                identity_type = "user"
                display = claims.get("name") if isinstance(claims.get("name"), str) and _printable(claims["name"], 256) else None
                display = display or (user and user["display_name"]) or email or sub
                if user:
                    tenant_id = tenant_id or user["tenant_id"]
                    groups += ["group:" + g["name"] for g in store.groups_of_user(s, sub)]
                    if mfa_at is None and user["mfa_enabled"] and isinstance(amr, list) and "mfa" in amr:
                        mfa_at = _utc(claims.get("iat"))
            principal = principal_key(sub, tenant_id)
            promoted = bootstrap and self._maybe_bootstrap(s, identity_type, identity_id, sub, principal)
            grants = roles.grants_from_claims(claims, tenant_id, partner_id) + roles.stored_grants(s, principal)
        if tenant_row is not None:
            self._tenants[tenant_row["id"]] = (tenant_row, time.time())
        if promoted:
            self._audit_bootstrap(identity_id, principal, tenant_id)
            self.invalidate()   # other processes may hold this identity without its new role
        act = claims.get("act")
        return Identity(
            identity_id=identity_id, identity_type=identity_type, subject=sub, tenant_id=tenant_id,
            partner_id=partner_id, scopes=parse_scope_claim(claims.get("scope")),
            groups=tuple(dict.fromkeys(groups)), roles=frozenset(g.role for g in grants), display_name=display,
            mfa_verified_at=mfa_at, token_kind="jwt", token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
            issued_at=_utc(claims.get("iat")), expires_at=_utc(claims.get("exp")), claims=claims,
            grants=tuple(dict.fromkeys(grants)),
            acting_for=act.get("sub") if isinstance(act, dict) and isinstance(act.get("sub"), str) else None,
        )

    def _maybe_bootstrap(self, s, identity_type: str, identity_id: str, subject: str, principal: str) -> bool:
        """Bind BOOTSTRAP_SUPER_ADMIN to the first matching sign-in (its sub and tenant), once ever."""
        target = self.runtime.settings.bootstrap_super_admin
        if not target or principal in self._bootstrapped:
            return False
        if identity_type != "user" or (identity_id != target.lower() if target.startswith("user:") else subject != target):
            return False
        promoted = roles.promote_bootstrap_admin(s, target, principal, identity_id)
        self._bootstrapped.add(principal)
        if promoted:
            log.warning("bootstrap super admin promoted", extra={"identity": identity_id, "principal": principal})
        return promoted

    def _audit_bootstrap(self, identity_id: str, principal: str, tenant_id: str | None) -> None:
        from ..audit import AuditEntry, record_now

        record_now(self.runtime, AuditEntry(action="bootstrap_promote", tenant_id=tenant_id, identity_type="system",
                                            identity_id="system:bootstrap",
                                            extra_data={"promoted": identity_id, "principal": principal, "role": "super_admin",
                                                        "source": "BOOTSTRAP_SUPER_ADMIN"}))

    # ------------------------------------------------------------------ PAT
    def _from_personal_token(self, token: str) -> tuple[Identity, float]:
        with self.runtime.db.transaction() as s:
            row = personal_tokens.find(s, token)
            groups: list[str] = []
            identity_id = row["identity_id"]
            if row["identity_type"] == "user":
                user = store.user(s, row["subject"])
                if user_is_inactive(user):
                    raise ScaiVaultError("token_revoked", "the owner of this personal token is suspended or removed")
                if user:
                    groups = ["group:" + g["name"] for g in store.groups_of_user(s, row["subject"])]
                    # the binding name follows the cache (an email change or the first sync), the owner does not
                    if user["email"]:
                        identity_id = user_identity_id(user["email"])
            # roles are derived at use from the role store: a token's transient `role` claim is never kept
            grants = roles.stored_grants(s, principal_key(row["subject"], row["tenant_id"]))
            personal_tokens.touch(s, row["id"])
        identity = Identity(
            identity_id=identity_id, identity_type=row["identity_type"], subject=row["subject"],
            tenant_id=row["tenant_id"], partner_id=row["partner_id"], scopes=frozenset(row["scopes"]),
            groups=tuple(dict.fromkeys(groups)), roles=frozenset(g.role for g in grants),
            display_name=row["display_name"], token_kind="pat", token_id=row["id"], issued_at=row["created_at"],
            expires_at=row["expires_at"], claims={},
            grants=tuple(dict.fromkeys(grants)),
        )
        return identity, row["expires_at"].timestamp()

    # ------------------------------------------------------------------ tenants
    def tenant(self, tenant_id: str) -> dict | None:
        """The cached tenant row (per process, dropped with the epoch), or None."""
        self._sync_epoch()
        hit = self._tenants.get(tenant_id)
        now = time.time()
        if hit is not None and now - hit[1] < MAX_IDENTITY_AGE_SECONDS:
            return hit[0]
        with self.runtime.db.session() as s:
            row = store.tenant(s, tenant_id)
        self._bounded_put(self._tenants, tenant_id, (row, now))
        return row


__all__ = ["Authenticator", "RoleGrant"]
