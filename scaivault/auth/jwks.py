"""ScaiKey's signing keys: discovery (spec/15 section 1.3), JWKS cache, refetch on unknown kid."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import jwt
import requests

from ..errors import ScaiVaultError

log = logging.getLogger("scaivault.auth.jwks")

PLATFORM_DISCOVERY_PATH = "/api/v1/platform/oauth/.well-known/openid-configuration"
PLATFORM_JWKS_PATH = "/api/v1/platform/.well-known/jwks.json"
ALLOWED_ALGORITHMS = ("RS256", "ES256")
# kty/crv a key must have to be used with each allowed algorithm
_KEY_SHAPE = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}

JWKS_MAX_AGE_SECONDS = 600.0          # scheduled refresh: rotation is picked up within 10 minutes
UNKNOWN_KID_REFETCH_INTERVAL = 10.0   # at most one forced refetch per interval per process
HTTP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Discovery:
    issuer: str | None
    jwks_uri: str
    token_endpoint: str | None


class JwksCache:
    """Keys by kid, fetched lazily, refreshed every 10 minutes or (rate-limited) on an unknown kid."""

    def __init__(self, scaikey_url: str | None, jwks_url: str | None = None):
        self.scaikey_url = scaikey_url.rstrip("/") if scaikey_url else None
        self.jwks_url_override = jwks_url
        self._discovery: Discovery | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._last_forced = float("-inf")
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.scaikey_url or self.jwks_url_override)

    def discovery(self) -> Discovery:
        """The platform discovery document (cached); falls back to the documented JWKS path."""
        if self._discovery is not None:
            return self._discovery
        issuer = token_endpoint = jwks_uri = None
        if self.scaikey_url:
            try:
                resp = requests.get(self.scaikey_url + PLATFORM_DISCOVERY_PATH, timeout=HTTP_TIMEOUT_SECONDS)
                if resp.status_code == 200:
                    doc = resp.json()
                    if isinstance(doc, dict):
                        issuer = doc.get("issuer") if isinstance(doc.get("issuer"), str) else None
                        token_endpoint = doc.get("token_endpoint") if isinstance(doc.get("token_endpoint"), str) else None
                        jwks_uri = doc.get("jwks_uri") if isinstance(doc.get("jwks_uri"), str) else None
            except (requests.RequestException, ValueError) as exc:
                log.warning("ScaiKey discovery failed", extra={"error": type(exc).__name__})
                if not self.jwks_url_override:
                    raise ScaiVaultError("service_unavailable", "ScaiKey discovery is unreachable") from None
        jwks_uri = self.jwks_url_override or jwks_uri or (
            self.scaikey_url + PLATFORM_JWKS_PATH if self.scaikey_url else None)
        if not jwks_uri:
            raise ScaiVaultError("token_invalid", "no ScaiKey is configured to verify this token")
        self._discovery = Discovery(issuer=issuer, jwks_uri=jwks_uri,
                                    token_endpoint=token_endpoint or (
                                        self.scaikey_url + "/api/v1/platform/oauth/token" if self.scaikey_url else None))
        return self._discovery

    def _fetch(self) -> None:
        uri = self.discovery().jwks_uri
        try:
            resp = requests.get(uri, timeout=HTTP_TIMEOUT_SECONDS)
            resp.raise_for_status()
            doc = resp.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("JWKS fetch failed", extra={"error": type(exc).__name__})
            if self._keys:
                return  # keep serving the keys we have; a later call retries
            raise ScaiVaultError("service_unavailable", "ScaiKey's signing keys are unreachable") from None
        keys: dict[str, jwt.PyJWK] = {}
        for entry in doc.get("keys", []) if isinstance(doc, dict) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type we cannot use (e.g. symmetric): never selectable
        self._keys = keys
        self._fetched_at = time.monotonic()

    def preload(self) -> None:
        """Fetch the signing keys now (a new worker warming up), unless they are fresh."""
        if self.configured and (not self._keys or time.monotonic() - self._fetched_at > JWKS_MAX_AGE_SECONDS):
            with self._lock:
                self._fetch()

    def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The public key for `kid` usable with `alg`, or token_invalid."""
        if not isinstance(kid, str) or not kid:
            raise ScaiVaultError("token_invalid", "the token names no signing key (kid)")
        now = time.monotonic()
        if not self._keys or now - self._fetched_at > JWKS_MAX_AGE_SECONDS:
            with self._lock:
                if not self._keys or now - self._fetched_at > JWKS_MAX_AGE_SECONDS:
                    self._fetch()
        key = self._keys.get(kid)
        if key is None:
            with self._lock:
                key = self._keys.get(kid)
                if key is None and time.monotonic() - self._last_forced >= UNKNOWN_KID_REFETCH_INTERVAL:
                    self._last_forced = time.monotonic()
                    self._fetch()
                    key = self._keys.get(kid)
        if key is None:
            raise ScaiVaultError("token_invalid", "the token was signed with an unknown key")
        kty, crv = _KEY_SHAPE[alg]
        jwk = key._jwk_data
        if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv) or jwk.get("alg") not in (None, alg):
            raise ScaiVaultError("token_invalid", "the token's algorithm does not match its key")
        return key
