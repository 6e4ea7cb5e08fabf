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
FAILURE_BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)   # negative cache after 1, 2, 3, ... failed fetches


@dataclass(frozen=True)
class Discovery:
    issuer: str | None
    jwks_uri: str
    token_endpoint: str | None


class JwksCache:
    """Keys by kid, fetched lazily, refreshed every 10 minutes or (rate-limited) on an unknown kid.

    Design.md invariant 12 (issue 9 F10): no lock is held across network I/O. One caller (the
    leader) fetches while concurrent callers wait on its result (single flight), so N logins
    with an unknown kid cost one fetch and one timeout, not N in a row. A failed fetch is
    remembered (negative cache, backoff 1 s doubling to 30 s), so an unresponsive ScaiKey is not
    asked again by every login. Stale keys keep being served while a background thread refreshes
    them (stale-while-revalidate).
    """

    def __init__(self, scaikey_url: str | None, jwks_url: str | None = None, *,
                 http_timeout: float = HTTP_TIMEOUT_SECONDS):
        self.scaikey_url = scaikey_url.rstrip("/") if scaikey_url else None
        self.jwks_url_override = jwks_url
        self.http_timeout = http_timeout
        self._discovery: Discovery | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._last_forced = float("-inf")
        self._failures = 0
        self._retry_at = float("-inf")      # negative cache: no fetch before this (monotonic)
        self._inflight: threading.Event | None = None
        self._state = threading.Lock()      # guards the fields above; never held across I/O

    @property
    def configured(self) -> bool:
        return bool(self.scaikey_url or self.jwks_url_override)

    def discovery(self) -> Discovery:
        """The platform discovery document (cached); falls back to the documented JWKS path."""
        if self._discovery is None:
            self._refresh(wait=True)
        if self._discovery is None:
            if not self.configured:
                raise ScaiVaultError("token_invalid", "no ScaiKey is configured to verify this token")
            raise ScaiVaultError("service_unavailable", "ScaiKey discovery is unreachable")
        return self._discovery

    # ------------------------------------------------------------------ fetching (never under _state)
    def _load_discovery(self) -> Discovery | None:
        issuer = token_endpoint = jwks_uri = None
        if self.scaikey_url:
            try:
                resp = requests.get(self.scaikey_url + PLATFORM_DISCOVERY_PATH, timeout=self.http_timeout)
                if resp.status_code == 200:
                    doc = resp.json()
                    if isinstance(doc, dict):
                        issuer = doc.get("issuer") if isinstance(doc.get("issuer"), str) else None
                        token_endpoint = doc.get("token_endpoint") if isinstance(doc.get("token_endpoint"), str) else None
                        jwks_uri = doc.get("jwks_uri") if isinstance(doc.get("jwks_uri"), str) else None
            except (requests.RequestException, ValueError) as exc:
                log.warning("ScaiKey discovery failed", extra={"error": type(exc).__name__})
                if not self.jwks_url_override:
                    return None
        jwks_uri = self.jwks_url_override or jwks_uri or (
            self.scaikey_url + PLATFORM_JWKS_PATH if self.scaikey_url else None)
        if not jwks_uri:
            return None
        return Discovery(issuer=issuer, jwks_uri=jwks_uri,
                         token_endpoint=token_endpoint or (
                             self.scaikey_url + "/api/v1/platform/oauth/token" if self.scaikey_url else None))

    def _fetch(self) -> bool:
        """One discovery (until it succeeded once) and JWKS download; True when fresh keys were stored."""
        discovery = self._discovery or self._load_discovery()
        if discovery is None:
            return False
        self._discovery = discovery
        try:
            resp = requests.get(discovery.jwks_uri, timeout=self.http_timeout)
            resp.raise_for_status()
            doc = resp.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("JWKS fetch failed", extra={"error": type(exc).__name__})
            return False
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
        return True

    def _refresh(self, *, wait: bool, unknown_kid: bool = False) -> None:
        """Fetch once for every concurrent caller; `wait=False` starts it in the background and returns.

        `unknown_kid`: joins a fetch under way, or starts one at most once per UNKNOWN_KID_REFETCH_INTERVAL.
        """
        with self._state:
            now = time.monotonic()
            event = self._inflight
            if event is None:
                if now < self._retry_at:
                    return                               # failed recently: answer from what we have
                if unknown_kid:
                    if now - self._last_forced < UNKNOWN_KID_REFETCH_INTERVAL:
                        return
                    self._last_forced = now
            leader = event is None
            if leader:
                event = self._inflight = threading.Event()
        if leader:
            if wait:
                self._lead(event)
            else:
                threading.Thread(target=self._lead, args=(event,), name="jwks-refresh", daemon=True).start()
        elif wait:
            # bounded: discovery and JWKS requests each time out after http_timeout
            event.wait(2 * self.http_timeout + 1.0)  # type: ignore[union-attr]

    def _lead(self, event: threading.Event) -> None:
        ok = False
        try:
            ok = self._fetch()
        except Exception as exc:   # never leave followers waiting on a crashed leader
            log.warning("JWKS refresh failed", extra={"error": type(exc).__name__})
        finally:
            with self._state:
                if ok:
                    self._failures = 0
                    self._retry_at = float("-inf")
                else:
                    self._failures += 1
                    backoff = FAILURE_BACKOFF_SECONDS[min(self._failures, len(FAILURE_BACKOFF_SECONDS)) - 1]
                    self._retry_at = time.monotonic() + backoff
                self._inflight = None
            event.set()

    def preload(self) -> None:
        """Fetch the signing keys now (a new worker warming up), unless they are fresh."""
        if self.configured and (not self._keys or time.monotonic() - self._fetched_at > JWKS_MAX_AGE_SECONDS):
            self._refresh(wait=True)             # single-flight with any request fetching meanwhile

    def exercise(self) -> int:
        """Check a made-up signature (it fails) against every loaded key, through the algorithm objects
        jwt.decode uses: a process's first check with a key pays for OpenSSL's per-key and per-algorithm
        setup, which a warming worker takes off its first request. Returns the number of keys."""
        done = 0
        for key in list(self._keys.values()):
            public = key.key
            size = getattr(public, "key_size", 256)
            length = (size + 7) // 8 if key._jwk_data.get("kty") == "RSA" else 2 * ((size + 7) // 8)
            try:
                key.Algorithm.verify(b"scaivault worker warm-up", public, b"\0" * (length - 1) + b"\1")
            except Exception:   # a key PyJWT cannot use with its algorithm: key_for refuses it anyway
                pass
            done += 1
        return done

    def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The public key for `kid` usable with `alg`, or token_invalid (503 when no key was ever fetched)."""
        if not isinstance(kid, str) or not kid:
            raise ScaiVaultError("token_invalid", "the token names no signing key (kid)")
        if not self._keys:
            self._refresh(wait=True)
            if not self._keys:
                raise ScaiVaultError("service_unavailable", "ScaiKey's signing keys are unreachable")
        elif time.monotonic() - self._fetched_at > JWKS_MAX_AGE_SECONDS:
            self._refresh(wait=False)                    # stale-while-revalidate
        key = self._keys.get(kid)
        if key is None:
            self._refresh(wait=True, unknown_kid=True)
            key = self._keys.get(kid)
        if key is None:
            raise ScaiVaultError("token_invalid", "the token was signed with an unknown key")
        kty, crv = _KEY_SHAPE[alg]
        jwk = key._jwk_data
        if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv) or jwk.get("alg") not in (None, alg):
            raise ScaiVaultError("token_invalid", "the token's algorithm does not match its key")
        return key
