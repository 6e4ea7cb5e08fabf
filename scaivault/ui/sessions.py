"""Sign-in sessions of the admin UI, kept in PostgreSQL.

The browser holds only a random 256-bit session secret in an HttpOnly cookie. The row is
keyed by its SHA-256 and holds the bearer token AES-256-GCM-encrypted under a key derived
from the secret (HKDF), so neither a database dump nor a script in the page yields a token.
The CSRF token is derived from the same secret, so it needs no storage of its own.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_LIFETIME = timedelta(hours=8)
LOGIN_LIFETIME = timedelta(minutes=10)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _token_key(session_secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"scaivault/ui-session-token").derive(session_secret.encode())
    return AESGCM(key)


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session: an HMAC of the secret, sent back by the page's scripts."""
    return hmac.new(session_secret.encode(), b"scaivault/ui-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_secret: str, presented: str | None) -> bool:
    return hmac.compare_digest(csrf_token(session_secret), presented or "")


@dataclass(frozen=True)
class UiSession:
    secret: str
    token: str
    identity_id: str
    expires_at: datetime


class UiSessionStore:
    """Create, find and end UI sessions and pending logins (services layer: no Flask here)."""

    def __init__(self, db):
        self.db = db

    # ------------------------------------------------------------------ sessions
    def create(self, token: str, identity_id: str, token_expires_at: datetime | None = None) -> UiSession:
        """A new session for a verified bearer token; it ends no later than the token does."""
        now = datetime.now(timezone.utc)
        expires_at = now + SESSION_LIFETIME
        if token_expires_at is not None:
            expires_at = min(expires_at, token_expires_at)
        secret = secrets.token_urlsafe(32)
        nonce = secrets.token_bytes(12)
        sealed = nonce + _token_key(secret).encrypt(nonce, token.encode(), _digest(secret))
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM ui_sessions WHERE expires_at < now()")
            tx.execute("""INSERT INTO ui_sessions (id_hash, sealed_token, identity_id, expires_at)
                          VALUES (:h, :t, :i, :e)""", h=_digest(secret), t=sealed, i=identity_id, e=expires_at)
        return UiSession(secret, token, identity_id, expires_at)

    def find(self, secret: str | None) -> UiSession | None:
        """The live session for a cookie value, or None (unknown, expired or tampered)."""
        if not secret or len(secret) > 128:
            return None
        row = self.db.one("""SELECT sealed_token, identity_id, expires_at FROM ui_sessions
                             WHERE id_hash = :h AND expires_at > now()""", h=_digest(secret))
        if row is None:
            return None
        sealed = bytes(row["sealed_token"])
        try:
            token = _token_key(secret).decrypt(sealed[:12], sealed[12:], _digest(secret)).decode()
        except InvalidTag:
            return None
        return UiSession(secret, token, row["identity_id"], row["expires_at"])

    def end(self, secret: str | None) -> None:
        if secret and len(secret) <= 128:
            self.db.execute("DELETE FROM ui_sessions WHERE id_hash = :h", h=_digest(secret))

    # ------------------------------------------------------------------ pending logins
    def begin_login(self) -> tuple[str, str, str]:
        """(state, code_verifier, nonce) of a new authorization request, remembered for 10 min."""
        state, verifier, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(48), secrets.token_urlsafe(24)
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM ui_logins WHERE expires_at < now()")
            tx.execute("""INSERT INTO ui_logins (state_hash, code_verifier, nonce, expires_at)
                          VALUES (:h, :v, :n, :e)""", h=_digest(state), v=verifier, n=nonce,
                       e=datetime.now(timezone.utc) + LOGIN_LIFETIME)
        return state, verifier, nonce

    def finish_login(self, state: str) -> tuple[str, str] | None:
        """(code_verifier, nonce) for `state`, consumed: a state answers one callback only."""
        if not state or len(state) > 128:
            return None
        with self.db.transaction() as tx:
            row = tx.one("""DELETE FROM ui_logins WHERE state_hash = :h AND expires_at > now()
                            RETURNING code_verifier, nonce""", h=_digest(state))
        return (row["code_verifier"], row["nonce"]) if row else None
