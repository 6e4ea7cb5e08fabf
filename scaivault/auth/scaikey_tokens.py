"""Verification of ScaiKey-signed JWTs (spec/15 sections 1.4, 1.5): signature, alg, exp/nbf, iss, aud."""
from __future__ import annotations

import time
from typing import Any, Callable

import jwt

from ..errors import ScaiVaultError
from .jwks import ALLOWED_ALGORITHMS, JwksCache

CLOCK_SKEW_SECONDS = 30


class ScaiKeyTokenVerifier:
    """Checks one JWT against ScaiKey's keys and ScaiVault's issuer and audience rules."""

    def __init__(self, jwks: JwksCache, scaikey_url: str | None, audience: tuple[str, ...],
                 tenant_slug: Callable[[str], str | None] | None = None):
        self.jwks = jwks
        self.scaikey_url = scaikey_url.rstrip("/") if scaikey_url else None
        self.audience = frozenset(audience)
        self.tenant_slug = tenant_slug

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or token_invalid / token_expired."""
        if not self.jwks.configured:
            raise ScaiVaultError("token_invalid", "JWTs are not accepted: no ScaiKey is configured")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise ScaiVaultError("token_invalid", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise ScaiVaultError("token_invalid", "the token's signing algorithm is not accepted",
                                 details={"accepted_algorithms": list(ALLOWED_ALGORITHMS)})
        key = self.jwks.key_for(header.get("kid"), alg)
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=[alg], leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": False, "verify_iss": False},
            )
        except jwt.ExpiredSignatureError:
            raise ScaiVaultError("token_expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise ScaiVaultError("token_invalid", "the token is not valid yet (nbf)") from None
        except jwt.PyJWTError:
            raise ScaiVaultError("token_invalid", "the token's signature or claims did not validate") from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise ScaiVaultError("token_invalid", "the token has no subject")
        self._check_issuer(claims)
        self._check_audience(claims)
        return claims

    def accepted_issuers(self, claims: dict[str, Any], *, with_slug: bool = False) -> set[str]:
        issuers: set[str] = set()
        discovered = self.jwks.discovery().issuer if self.scaikey_url else None
        if discovered:
            issuers.add(discovered.rstrip("/"))
        if self.scaikey_url:
            issuers.add(self.scaikey_url)
            tenant = claims.get("tenant_id")
            if isinstance(tenant, str) and tenant:
                issuers.add(f"{self.scaikey_url}/tenants/{tenant}")
                slug = self.tenant_slug(tenant) if with_slug and self.tenant_slug else None
                if slug:
                    issuers.add(f"{self.scaikey_url}/tenants/{slug}")
        return issuers

    def _check_issuer(self, claims: dict[str, Any]) -> None:
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise ScaiVaultError("token_invalid", "the token names no issuer")
        iss = iss.rstrip("/")
        if iss in self.accepted_issuers(claims) or iss in self.accepted_issuers(claims, with_slug=True):
            return
        # spec/15 1.4 names this code for an untrusted issuer (the signature itself was fine)
        raise ScaiVaultError("authentication_required", "the token was issued by an issuer this ScaiVault does not trust")

    def _check_audience(self, claims: dict[str, Any]) -> None:
        if not self.audience:
            return
        aud = claims.get("aud")
        values = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
        if not values & self.audience:
            raise ScaiVaultError("token_invalid", "the token is not meant for this ScaiVault (aud)")


def expiry_of(claims: dict[str, Any]) -> float:
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, (int, float)) else time.time()
