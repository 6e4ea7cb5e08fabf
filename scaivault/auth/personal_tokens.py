"""Personal access tokens (`skt_...`): issued by ScaiVault, stored only as a SHA-256 hash.

A PAT acts as its creator: same identity, the creator's groups and stored roles at use
time (never a snapshot of a token's `role` claim), and at most the scopes its creator's token
held when it was made. PATs are minted from user sessions (or from another PAT of the user,
which then bounds its lifetime and takes it along when revoked).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timezone

from ..db import Session
from ..errors import ScaiVaultError
from .identity import Identity, principal_key
from .scopes import ALL_SCOPES, endpoint_scopes

PREFIX = "skt_"
DEFAULT_LIFETIME_SECONDS = 90 * 86400
MAX_LIFETIME_SECONDS = 366 * 86400
MAX_TOKENS_PER_IDENTITY = 100


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token_value() -> str:
    # 32 random bytes = 256 bits, url-safe base64 (43 characters)
    return PREFIX + secrets.token_urlsafe(32)


def public_view(row: dict) -> dict:
    """A PAT as listed: everything but the secret (which is not stored anyway)."""
    now = datetime.now(timezone.utc)
    status = "revoked" if row["revoked_at"] else "expired" if row["expires_at"] <= now else "active"
    return {"id": row["id"], "name": row["name"], "scopes": list(row["scopes"]), "status": status,
            "created_at": _iso(row["created_at"]), "expires_at": _iso(row["expires_at"]),
            "revoked_at": _iso(row["revoked_at"]), "last_used_at": _iso(row["last_used_at"])}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def issue(s: Session, creator: Identity, name: str, scopes: list[str], lifetime_seconds: int) -> tuple[dict, str]:
    """Create a PAT for `creator`; returns (row, the skt_ value to show once).

    Only users mint PATs (a service account asks ScaiKey for its tokens with its client
    credentials; a PAT would be a second, longer-lived credential ScaiKey cannot see). A PAT
    minted by a PAT never outlives it: the lifetime is cut to the parent's expiry.
    """
    if creator.token_kind == "exchange":   # a 90-day PAT would outlive the short exchanged token
        raise ScaiVaultError("forbidden", "a personal token cannot be created with an exchanged token")
    if creator.identity_type != "user":
        raise ScaiVaultError("forbidden", "personal access tokens are minted from user sessions; a service account "
                             "requests short-lived tokens from ScaiKey with its client credentials")
    wanted = list(dict.fromkeys(scopes))
    missing = [sc for sc in wanted if sc not in creator.scopes]
    if missing:
        raise ScaiVaultError("insufficient_scope", "a personal token cannot carry scopes your token does not hold",
                             details={"scopes_not_held": missing})
    if not 60 <= lifetime_seconds <= MAX_LIFETIME_SECONDS:
        raise ScaiVaultError("validation_error", "expires_in must be between 1m and 366d",
                             details={"fields": {"expires_in": "must be between 1m and 366d"}})
    parent_id = creator.token_id if creator.token_kind == "pat" else None
    if parent_id is not None and creator.expires_at is not None:
        remaining = int((creator.expires_at - datetime.now(timezone.utc)).total_seconds())
        if remaining < 60:
            raise ScaiVaultError("validation_error", "the personal token you use expires within a minute",
                                 details={"fields": {"expires_in": "the parent token expires within a minute"}})
        lifetime_seconds = min(lifetime_seconds, remaining)
    count = s.scalar("""SELECT count(*) FROM personal_tokens WHERE subject = :sub AND tenant_id IS NOT DISTINCT FROM :t
                        AND revoked_at IS NULL AND expires_at > now()""", sub=creator.subject, t=creator.tenant_id)
    if count >= MAX_TOKENS_PER_IDENTITY:
        raise ScaiVaultError("conflict", f"at most {MAX_TOKENS_PER_IDENTITY} active personal tokens per identity")
    value = new_token_value()
    row = s.one(
        """INSERT INTO personal_tokens (id, token_hash, name, identity_id, identity_type, subject, display_name,
                                        tenant_id, partner_id, scopes, parent_id, expires_at)
           VALUES (:id, :h, :name, :iid, :itype, :sub, :dn, :t, :p, CAST(:scopes AS text[]), :parent,
                   now() + make_interval(secs => :life))
           RETURNING *""",
        id="pat_" + secrets.token_hex(10), h=token_hash(value), name=name, iid=creator.identity_id,
        itype=creator.identity_type, sub=creator.subject, dn=creator.display_name, t=creator.tenant_id,
        p=creator.partner_id, scopes=wanted, parent=parent_id, life=lifetime_seconds)
    return row, value  # type: ignore[return-value]


def find(s: Session, token: str) -> dict:
    """The active row for a presented token, or token_invalid / token_revoked / token_expired."""
    digest = token_hash(token)
    row = s.one("SELECT * FROM personal_tokens WHERE token_hash = :h", h=digest)
    # the index lookup already matched; compare again in constant time so no path compares bytes early-out
    if row is None or not hmac.compare_digest(bytes(row["token_hash"]), digest):
        raise ScaiVaultError("token_invalid", "unknown personal access token")
    if row["revoked_at"] is not None:
        raise ScaiVaultError("token_revoked", "this personal access token was revoked")
    if row["expires_at"] <= datetime.now(timezone.utc):
        raise ScaiVaultError("token_expired", "this personal access token has expired")
    return row


def touch(s: Session, token_id: str) -> None:
    s.execute("""UPDATE personal_tokens SET last_used_at = now() WHERE id = :id
                 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""", id=token_id)


def list_for(s: Session, owner: Identity) -> list[dict]:
    """The PATs of one owner, by its sub and tenant (never by a name two identities could share)."""
    return s.query("""SELECT * FROM personal_tokens WHERE subject = :sub AND tenant_id IS NOT DISTINCT FROM :t
                      ORDER BY created_at DESC, id""", sub=owner.subject, t=owner.tenant_id)


def owned_by(row: dict, identity: Identity) -> bool:
    return row["subject"] == identity.subject and row["tenant_id"] == identity.tenant_id


def revoke(s: Session, caller: Identity, token_id: str) -> dict:
    """Revoke one PAT of the caller (a super_admin may revoke anyone's); token_not_found otherwise."""
    row = s.one("SELECT * FROM personal_tokens WHERE id = :id", id=token_id)
    if row is None or not (owned_by(row, caller) or caller.is_super_admin):
        raise ScaiVaultError("token_not_found", "no such personal access token")
    if row["revoked_at"] is None:
        row = s.one("UPDATE personal_tokens SET revoked_at = now() WHERE id = :id RETURNING *", id=token_id)
    # the tokens it minted (and theirs) die with it
    s.execute("""WITH RECURSIVE minted(id) AS (
                     SELECT id FROM personal_tokens WHERE parent_id = :id
                     UNION SELECT t.id FROM personal_tokens t JOIN minted m ON t.parent_id = m.id)
                 UPDATE personal_tokens SET revoked_at = now()
                  WHERE id IN (SELECT id FROM minted) AND revoked_at IS NULL""", id=token_id)
    return row  # type: ignore[return-value]


# ----------------------------------------------------------------------------- development
DEV_PARTNER = "ptn_dev"
DEV_TENANT = "tnt_dev"
DEV_IDENTITY = "user:dev@localhost"
DEV_SUBJECT = "usr_dev"


def issue_dev_token(runtime) -> str:
    """A super-admin PAT with every scope for `user:dev@localhost` in a dev tenant (for `scaivault dev`)."""
    from .identity import RoleGrant

    with runtime.db.transaction() as s:
        s.execute("""INSERT INTO identity_partners (id, name, slug, status, synced) VALUES (:p, 'Development', 'dev',
                     'ACTIVE', false) ON CONFLICT (id) DO NOTHING""", p=DEV_PARTNER)
        s.execute("""INSERT INTO identity_tenants (id, partner_id, name, slug, status, synced) VALUES (:t, :p,
                     'Development', 'dev', 'ACTIVE', false) ON CONFLICT (id) DO NOTHING""", t=DEV_TENANT, p=DEV_PARTNER)
        s.execute("""INSERT INTO identity_role_assignments (principal, identity_id, role, source, granted_by)
                     VALUES (:p, :i, 'super_admin', 'bootstrap', 'system:dev') ON CONFLICT DO NOTHING""",
                  p=principal_key(DEV_SUBJECT, DEV_TENANT), i=DEV_IDENTITY)
        every_scope = ALL_SCOPES | endpoint_scopes()
        creator = Identity(identity_id=DEV_IDENTITY, identity_type="user", subject=DEV_SUBJECT, tenant_id=DEV_TENANT,
                           partner_id=DEV_PARTNER, scopes=every_scope, roles=frozenset({"super_admin"}),
                           display_name="Development admin", grants=(RoleGrant("super_admin"),))
        _, value = issue(s, creator, "scaivault dev", sorted(every_scope), DEFAULT_LIFETIME_SECONDS)
    return value
