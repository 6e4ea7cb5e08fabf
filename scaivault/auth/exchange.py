"""Token exchange (RFC 8693): a foreign workload token -> a short-lived ScaiVault token (`svx_`).

A trust rule (scaivault.services.trust_rules) names a foreign issuer, the audience its tokens
must carry, claim conditions (globs), the service-account identity (`sa:<name>`, in the
rule's tenant) and the most scopes it may get. The minted token is opaque, stored only as a
SHA-256 hash, keyed immutably on (rule id, foreign issuer, foreign subject, tenant), and
authenticates like any other token through the one hook in the Authenticator
(`identity_for_token`). It carries no admin role: policies bound to the rule's identity govern it.
"""
from __future__ import annotations

import fnmatch
import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import jwt

from ..audit import AuditEntry, record
from ..errors import ScaiVaultError
from .foreign_jwks import ALGORITHMS, ForeignKeys
from .identity import Identity

PREFIX = "svx_"
SUBJECT_TOKEN_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
ISSUED_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
LEEWAY_SECONDS = 60
MAX_SUBJECT_TOKEN_CHARS = 16384
MAX_CLAIM_CHARS = 1024
RULES_PER_ISSUER = 200


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def claim_matches(pattern: str, value: Any) -> bool:
    """A condition: the claim is a string (or number/bool, compared as text) matching the glob."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_CLAIM_CHARS:
        return False
    return fnmatch.fnmatchcase(value, pattern)


def _audiences(claims: dict) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def _unauthorized(message: str, code: str = "token_invalid") -> ScaiVaultError:
    return ScaiVaultError(code, message, status=401)


class TokenExchange:
    """Owned by the Runtime: verifies foreign tokens against trust rules, mints and resolves svx_ tokens."""

    def __init__(self, runtime, keys: ForeignKeys | None = None):
        self.runtime = runtime
        self.keys = keys or ForeignKeys()
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    # ------------------------------------------------------------------ verification
    def _verified(self, token: str, rules: list[dict]) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthorized("the subject token is not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise _unauthorized("the subject token's algorithm is not accepted")
        issuer = rules[0]["issuer"]
        key = None
        for source in dict.fromkeys((r["jwks_url"] or "") for r in rules):
            url = self.keys.jwks_uri(issuer, source or None)
            key = self.keys.key(url, kid) if isinstance(kid, str) else None
            if key is not None:
                break
        if key is None:
            raise _unauthorized("the subject token was signed with a key its issuer does not publish")
        try:
            return jwt.decode(token, key=key, algorithms=[alg], issuer=issuer, leeway=LEEWAY_SECONDS,
                              options={"verify_aud": False, "require": ["exp", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the subject token has expired", "token_expired") from None
        except jwt.PyJWTError:
            raise _unauthorized("the subject token's signature or claims are invalid") from None

    def exchange(self, subject_token: str, subject_token_type: str, scopes: list[str] | None,
                 tenant_id: str | None, rule_name: str | None, audit_meta: dict) -> dict:
        """Verify `subject_token`, pick the matching rule, mint a token; 401 for every refusal."""
        if subject_token_type not in SUBJECT_TOKEN_TYPES:
            raise ScaiVaultError("invalid_request", "subject_token_type must be urn:ietf:params:oauth:token-type:jwt")
        if not isinstance(subject_token, str) or not 0 < len(subject_token) <= MAX_SUBJECT_TOKEN_CHARS:
            raise ScaiVaultError("invalid_request", "subject_token is required")
        try:
            unverified = jwt.decode(subject_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _unauthorized("the subject token is not a JWT") from None
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not 0 < len(issuer) <= 512:
            raise _unauthorized("the subject token names no issuer")
        where = "issuer = :iss" + (" AND tenant_id = :t" if tenant_id else "") + (" AND name = :n" if rule_name else "")
        rules = self.runtime.db.query(f"SELECT * FROM trust_rules WHERE {where} ORDER BY tenant_id, name LIMIT :lim",
                                      iss=issuer, lim=RULES_PER_ISSUER,
                                      **({"t": tenant_id} if tenant_id else {}), **({"n": rule_name} if rule_name else {}))
        if not rules:
            raise _unauthorized("no trust rule accepts tokens of this issuer")
        claims = self._verified(subject_token, rules)
        audiences = _audiences(claims)
        by_audience = [r for r in rules if r["audience"] in audiences]
        if not by_audience:
            self._audit_refusal(rules[0], claims, "wrong_audience", audit_meta)
            raise _unauthorized("the subject token's audience is not one a trust rule accepts")
        matching = [r for r in by_audience
                    if all(claim_matches(pattern, claims.get(name)) for name, pattern in (r["conditions"] or {}).items())]
        if not matching:
            self._audit_refusal(by_audience[0], claims, "conditions_not_met", audit_meta)
            raise _unauthorized("the subject token matches no trust rule's conditions")
        rule = matching[0]
        allowed = list(rule["max_scopes"])
        granted = allowed if not scopes else [s for s in dict.fromkeys(scopes) if s in allowed]
        if not granted:
            raise ScaiVaultError("insufficient_scope", "none of the requested scopes is allowed by the trust rule",
                                 details={"allowed_scopes": allowed})
        return self._mint(rule, claims, granted, audit_meta)

    def _mint(self, rule: dict, claims: dict, scopes: list[str], audit_meta: dict) -> dict:
        value = PREFIX + secrets.token_urlsafe(32)
        token_id = "xt_" + secrets.token_hex(8)
        now = self.clock()
        expires_at = now + timedelta(seconds=rule["ttl"])
        subject = str(claims["sub"])[:MAX_CLAIM_CHARS]
        import json

        with self.runtime.db.transaction() as s:
            s.execute("""INSERT INTO exchanged_tokens (id, token_hash, rule_id, tenant_id, partner_id, identity_id,
                             foreign_issuer, foreign_subject, scopes, issued_at, expires_at)
                         VALUES (:id, :h, :rule, :t, :p, :who, :iss, :sub, CAST(:scopes AS jsonb), :now, :exp)""",
                      id=token_id, h=token_hash(value), rule=rule["id"], t=rule["tenant_id"], p=rule["partner_id"],
                      who=rule["identity"], iss=rule["issuer"], sub=subject, scopes=json.dumps(scopes), now=now,
                      exp=expires_at)
            record(s, self._entry(rule, claims, True, audit_meta,
                                  {"token_id": token_id, "scopes": scopes,
                                   "expires_at": expires_at.isoformat().replace("+00:00", "Z")}))
        return {"access_token": value, "token_type": "Bearer", "expires_in": rule["ttl"],
                "issued_token_type": ISSUED_TOKEN_TYPE, "scope": " ".join(scopes)}

    @staticmethod
    def _entry(rule: dict, claims: dict, success: bool, meta: dict, extra: dict) -> AuditEntry:
        # a refused caller never became the rule's identity: it is recorded as anonymous
        return AuditEntry(action="token_exchange", tenant_id=rule["tenant_id"], partner_id=rule["partner_id"],
                          identity_type="service_account" if success else "anonymous",
                          identity_id=rule["identity"] if success else None, success=success,
                          source_ip=meta.get("source_ip"), user_agent=meta.get("user_agent"),
                          request_id=meta.get("request_id"),
                          extra_data={"rule": rule["name"], "rule_id": rule["id"], "foreign_issuer": rule["issuer"],
                                      "foreign_subject": str(claims.get("sub"))[:MAX_CLAIM_CHARS], **extra})

    def _audit_refusal(self, rule: dict, claims: dict, reason: str, meta: dict) -> None:
        """A verified token from a trusted issuer that no rule accepts: the tenant sees the attempt."""
        from ..audit import record_now

        try:
            record_now(self.runtime, self._entry(rule, claims, False, meta, {"error": reason}))
        except ScaiVaultError:
            pass      # the caller is refused either way

    # ------------------------------------------------------------------ the token kind
    def identity_for_token(self, token: str) -> tuple[Identity, float]:
        """The Identity of an svx_ token (the Authenticator's hook), and until when it holds."""
        row = self.runtime.db.one("""SELECT t.*, r.name AS rule_name FROM exchanged_tokens t
                                       JOIN trust_rules r ON r.id = t.rule_id WHERE t.token_hash = :h""",
                                  h=token_hash(token))
        if row is None:
            raise ScaiVaultError("token_invalid", "the exchanged token is unknown or its trust rule was removed")
        if row["expires_at"] <= self.clock():
            raise ScaiVaultError("token_expired", "the exchanged token has expired")
        foreign = f"{row['foreign_issuer']}#{row['foreign_subject']}"
        identity = Identity(
            identity_id=row["identity_id"], identity_type="service_account",
            subject=f"exchange:{row['rule_id']}:{foreign}", tenant_id=row["tenant_id"], partner_id=row["partner_id"],
            scopes=frozenset(row["scopes"]), display_name=row["identity_id"].removeprefix("sa:"),
            token_kind="exchange", token_id=row["id"], issued_at=row["issued_at"], expires_at=row["expires_at"],
            claims={"trust_rule": row["rule_name"], "foreign_issuer": row["foreign_issuer"],
                    "foreign_subject": row["foreign_subject"]},
            acting_for=foreign,
        )
        return identity, row["expires_at"].timestamp()
