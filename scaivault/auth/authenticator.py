"""Bearer token -> Identity, with the per-process caches that keep the hot path cheap.

Two caches keyed by SHA-256 of the token: verified JWT claims (valid until `exp`, never
re-verified) and derived identities (dropped whenever the cluster-wide auth epoch moves: PAT
revocation, role change, identity-cache change). Under them, the identity rows a JWT's identity is
derived from (tenant row, user row and groups or application, stored role grants), keyed by what
selects them (kind, sub, client id, the token's tenant claim), read in ONE statement and dropped
with the epoch like the identities: a new token of a known principal costs its signature check
only, and a new worker loads the rows of recently active principals before it accepts
(scaivault.warmup; Redis only says which rows to read, the rows come from the database).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from ..errors import ScaiVaultError
from ..identity import store
from ..redis_store import HintList
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
RECENT_PRINCIPALS_KEY = "scaivault:auth:recent_principals"   # warm-up hints: which rows to read, never a decision
RECENT_PRINCIPALS = HintList(RECENT_PRINCIPALS_KEY, 1000)
ROWS_BATCH = 100                   # principals per identity-rows statement (a warm-up reads them in batches)

# the tenant row's columns, as `SELECT * FROM identity_tenants` returns them (tests compare the two);
# listed, not `t.*`: a prepared statement whose result type changes with a migration would fail
TENANT_COLUMNS = ("id", "partner_id", "name", "slug", "status", "attributes", "synced", "deleted_at",
                  "last_synced_at", "created_at")
_USER_COLUMNS = ("id", "tenant_id", "email", "display_name", "status", "mfa_enabled", "deleted_at")
_APP_COLUMNS = ("id", "tenant_id", "partner_id", "slug", "name")

# Everything a JWT identity is derived from, for a batch of principals, in one statement (one
# snapshot): the same rows as store.tenant, store.user, store.groups_of_user,
# store.application_by_client_id and roles.stored_grants, plus when the first stored grant lapses.
IDENTITY_ROWS_SQL = (
    "SELECT i.kind AS sv_kind, i.sub AS sv_sub, i.client AS sv_client, i.tenant AS sv_tenant, "
    + ", ".join(f"u.{c} AS sv_user_{c}" for c in _USER_COLUMNS) + """,
       CASE WHEN u.id IS NULL THEN ARRAY[]::text[] ELSE ARRAY(
           WITH RECURSIVE memberships(group_id) AS (
               SELECT gm.group_id FROM identity_group_members gm WHERE gm.member_type = 'user' AND gm.member_id = i.sub
               UNION
               SELECT m.group_id FROM identity_group_members m JOIN memberships ms
                   ON m.member_type = 'group' AND m.member_id = ms.group_id)
           SELECT g.name FROM identity_groups g JOIN memberships ms ON g.id = ms.group_id
           WHERE g.deleted_at IS NULL ORDER BY g.name) END AS sv_groups, """
    + ", ".join(f"a.{c} AS sv_app_{c}" for c in _APP_COLUMNS) + """,
       r.roles AS sv_grants, r.lapse AS sv_grants_lapse, """
    + ", ".join(f"t.{c}" for c in TENANT_COLUMNS) + """
FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS i(kind text, sub text, client text, tenant text)
LEFT JOIN identity_users u ON i.kind = 'user' AND u.id = i.sub
LEFT JOIN LATERAL (SELECT x.id, x.tenant_id, x.partner_id, x.slug, x.name FROM identity_applications x
                   WHERE i.kind = 'sa' AND x.client_id = i.client AND x.deleted_at IS NULL
                   ORDER BY x.last_synced_at DESC NULLS LAST LIMIT 1) a ON true
LEFT JOIN LATERAL (SELECT json_agg(json_build_array(ra.role, ra.partner_id, ra.tenant_id) ORDER BY ra.role) AS roles,
                          min(ra.expires_at) AS lapse
                   FROM identity_role_assignments ra
                   WHERE ra.principal = COALESCE(NULLIF(i.tenant, ''), NULLIF(u.tenant_id, ''), '-') || '/' || i.sub
                     AND (ra.expires_at IS NULL OR ra.expires_at > now())) r ON true
LEFT JOIN identity_tenants t ON t.id = i.tenant""")

@dataclass(frozen=True)
class IdentityRows:
    """The cached rows one JWT identity is derived from (never the derivation itself)."""

    tenant: dict | None                 # the token's tenant, when it names one
    user: dict | None                   # users: the identity-cache row (the columns _from_claims reads)
    groups: tuple[str, ...]             # users with a row: their groups' names (nested memberships resolved)
    app: dict | None                    # service accounts: the application of the client id
    stored: tuple[RoleGrant, ...]       # unexpired stored role grants of the principal
    lapse: float | None                 # when the first of them expires (epoch seconds)


def valid_rows_key(key) -> bool:
    """A key _from_claims could produce (hints read from Redis are checked against this)."""
    if not (isinstance(key, (list, tuple)) and len(key) == 4):
        return False
    kind, sub, client, tenant = key
    return (kind in ("user", "sa") and isinstance(sub, str) and _printable(sub, 256)
            and (client is None if kind == "user" else isinstance(client, str) and 0 < len(client) <= 256)
            and (tenant is None or (isinstance(tenant, str) and TENANT_ID_RE.match(tenant) is not None)))


def _rows_from(record: dict) -> IdentityRows:
    user = {c: record[f"sv_user_{c}"] for c in _USER_COLUMNS} if record["sv_user_id"] is not None else None
    app = {c: record[f"sv_app_{c}"] for c in _APP_COLUMNS} if record["sv_app_id"] is not None else None
    tenant = {c: record[c] for c in TENANT_COLUMNS} if record["id"] is not None else None
    grants = record["sv_grants"]
    if isinstance(grants, str):
        grants = json.loads(grants)
    lapse = record["sv_grants_lapse"]
    return IdentityRows(tenant=tenant, user=user, groups=tuple(record["sv_groups"] or ()), app=app,
                        stored=tuple(RoleGrant(r, p, t) for r, p, t in grants or ()),
                        lapse=lapse.timestamp() if lapse is not None else None)


def read_identity_rows(s, keys: list) -> dict[tuple, IdentityRows]:
    """The rows of each key (kind 'user' | 'sa', sub, client id or None, the token's tenant claim or
    None), in one prepared statement (one round trip)."""
    items = json.dumps([{"kind": k, "sub": sub, "client": c, "tenant": t} for k, sub, c, t in keys])
    return {(r["sv_kind"], r["sv_sub"], r["sv_client"], r["sv_tenant"]): _rows_from(r)
            for r in s.run_prepared(IDENTITY_ROWS_SQL, items=items)}


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
        # identity rows, the time they were read, the epoch they were read under
        self._rows: dict[tuple, tuple[IdentityRows, float, object]] = {}
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
                self._rows.clear()
                self._seen_epoch = current

    def invalidate(self) -> None:
        """Drop derived identities here and (through the epoch) in every other process."""
        self.epoch.bump()
        with self._lock:
            self._identities.clear()
            self._tenants.clear()
            self._rows.clear()

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
        if is_service:
            client_id = claims.get("client_id") if isinstance(claims.get("client_id"), str) else sub
            key: tuple = ("sa", sub, client_id, tenant_id)
        else:
            key = ("user", sub, None, tenant_id)
        rows = self._identity_rows(key, note=bootstrap)
        user = rows.user
        if not is_service:
            # refused before anything is written (the just-in-time tenant below)
            if user_is_inactive(user):
                raise ScaiVaultError("token_revoked", "the user behind this token is suspended or removed")
            claimed = claims.get("email") if isinstance(claims.get("email"), str) and claims.get("email") else None
            if claimed is not None and not _printable(claimed, 320):
                raise ScaiVaultError("token_invalid", "the token's email claim is malformed")
        tenant_row = rows.tenant
        if tenant_id and (tenant_row is None or (tenant_row["partner_id"] is None and partner_id)):
            # a partner claim fills in a partner the cache does not know; it never replaces one
            with self.runtime.db.transaction() as s:
                tenant_row = store.ensure_tenant_just_in_time(s, tenant_id, partner_id)
            self._rows.pop(key, None)
        if tenant_id:
            partner_id = partner_id or tenant_row["partner_id"]
        if is_service:
            app = rows.app
            if app is not None and not _application_within(app, tenant_id, partner_id):
                app = None   # a name is resolved within the caller's tenant (or partner) only
            name = (app and (app["slug"] or app["name"])) or client_id
            identity_id, identity_type, display = "sa:" + name, "service_account", name
        else:
            # spec/15 2.4: the cached user row wins; the claim only names a user the cache has not seen
            email = (user and user["email"]) or claimed
            identity_id = user_identity_id(email) if email else "user:" + sub
            identity_type = "user"
            display = claims.get("name") if isinstance(claims.get("name"), str) and _printable(claims["name"], 256) else None
            display = display or (user and user["display_name"]) or email or sub
            if user:
                tenant_id = tenant_id or user["tenant_id"]
                groups += ["group:" + g for g in rows.groups]
                if mfa_at is None and user["mfa_enabled"] and isinstance(amr, list) and "mfa" in amr:
                    mfa_at = _utc(claims.get("iat"))
        principal = principal_key(sub, tenant_id)
        stored = list(rows.stored)
        promoted = False
        if bootstrap and self._bootstrap_due(identity_type, identity_id, sub, principal):
            with self.runtime.db.transaction() as s:
                promoted = self._maybe_bootstrap(s, identity_type, identity_id, sub, principal)
                stored = roles.stored_grants(s, principal)
        grants = roles.grants_from_claims(claims, tenant_id, partner_id) + stored
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

    def _bootstrap_due(self, identity_type: str, identity_id: str, subject: str, principal: str) -> bool:
        """Whether this sign-in is BOOTSTRAP_SUPER_ADMIN's and this process has not bound it yet."""
        target = self.runtime.settings.bootstrap_super_admin
        if not target or principal in self._bootstrapped:
            return False
        return identity_type == "user" and (identity_id == target.lower() if target.startswith("user:") else subject == target)

    def _maybe_bootstrap(self, s, identity_type: str, identity_id: str, subject: str, principal: str) -> bool:
        """Bind BOOTSTRAP_SUPER_ADMIN to the first matching sign-in (its sub and tenant), once ever."""
        if not self._bootstrap_due(identity_type, identity_id, subject, principal):
            return False
        target = self.runtime.settings.bootstrap_super_admin
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

    # ------------------------------------------------------------------ identity rows
    def _identity_rows(self, key: tuple, *, note: bool) -> IdentityRows:
        """The rows of `key`: from this process's cache while the epoch has not moved (and for at
        most MAX_IDENTITY_AGE_SECONDS, never past a stored grant's expiry), else one statement."""
        self._sync_epoch()
        epoch = self._seen_epoch
        hit = self._rows.get(key)
        if hit is not None:
            rows, read_at, read_under = hit
            now = time.time()
            if read_under == epoch and now - read_at < MAX_IDENTITY_AGE_SECONDS and (rows.lapse is None or now < rows.lapse):
                return rows
            self._rows.pop(key, None)
        read_at = time.time()
        with self.runtime.db.session() as s:
            rows = read_identity_rows(s, [key])[key]
        # tagged with the epoch seen before the read: a change committed meanwhile makes it a miss
        self._bounded_put(self._rows, key, (rows, read_at, epoch))
        if note:
            RECENT_PRINCIPALS.note(self.runtime.redis, list(key))   # its key only: which rows a new worker reads
        return rows

    def recent_principals(self, limit: int) -> list[tuple]:
        """The newest `limit` principals any process read rows for; malformed members are skipped."""
        return [tuple(key) for key in RECENT_PRINCIPALS.newest(self.runtime.redis, limit) if valid_rows_key(key)]

    def warm_rows(self, keys: Iterable[tuple], deadline: float) -> int:
        """Read the rows of `keys` (in batches, until `deadline`) into the cache; returns how many."""
        self._sync_epoch()
        keys = list(dict.fromkeys(keys))
        done = 0
        for start in range(0, len(keys), ROWS_BATCH):
            if time.monotonic() >= deadline:
                break
            epoch, read_at = self._seen_epoch, time.time()
            with self.runtime.db.session() as s:
                batch = read_identity_rows(s, keys[start:start + ROWS_BATCH])
            for key, rows in batch.items():
                self._bounded_put(self._rows, key, (rows, read_at, epoch))
            done += len(batch)
        return done

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
