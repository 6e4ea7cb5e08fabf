"""Signing keys of foreign OIDC issuers (GitHub Actions, Kubernetes API servers, ...).

Only issuers named by a trust rule are ever contacted (a token cannot make ScaiVault fetch
an arbitrary URL). Fetches are bounded in time and size, never run under a lock (one fetch
per URL at a time: other callers wait on an event, at most the fetch deadline), and the keys
are cached for ten minutes, refetched early at most every ten seconds for an unknown kid.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from urllib.parse import urlsplit

import jwt
import requests

from ..errors import ScaiVaultError

log = logging.getLogger("scaivault.auth.foreign_jwks")

FETCH_DEADLINE_SECONDS = 5.0
MAX_DOCUMENT_BYTES = 256 * 1024
CACHE_SECONDS = 600.0
UNKNOWN_KID_REFETCH_SECONDS = 10.0
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384")


def check_url(url: str, field: str) -> str:
    """https, or http to a loopback address (a local issuer or sidecar)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ScaiVaultError("invalid_config", f"{field} is not a URL") from None
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return url
    raise ScaiVaultError("invalid_config", f"{field} must be an https URL (http only to a loopback address)")


def fetch_json(url: str, deadline_seconds: float = FETCH_DEADLINE_SECONDS) -> dict:
    """GET a JSON object within a total deadline and size cap (a slow issuer cannot stall a worker)."""
    deadline = time.monotonic() + deadline_seconds
    try:
        with requests.get(url, timeout=(min(3.0, deadline_seconds), min(3.0, deadline_seconds)), stream=True,
                          allow_redirects=False, headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ScaiVaultError("service_unavailable", f"the issuer answered {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_content(8192):
                body.extend(chunk)
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ScaiVaultError("service_unavailable", "the issuer's document is too large")
                if time.monotonic() > deadline:
                    raise ScaiVaultError("service_unavailable", "the issuer is too slow")
        doc = json.loads(bytes(body))
    except requests.RequestException as exc:
        raise ScaiVaultError("service_unavailable", f"the issuer is unreachable ({type(exc).__name__})") from None
    except ValueError:
        raise ScaiVaultError("service_unavailable", "the issuer's document is not JSON") from None
    if not isinstance(doc, dict):
        raise ScaiVaultError("service_unavailable", "the issuer's document is not a JSON object")
    return doc


class ForeignKeys:
    """Per-process cache: JWKS URL -> {kid: PyJWK}; issuer -> its discovered jwks_uri."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._keys: dict[str, tuple[dict[str, jwt.PyJWK], float]] = {}
        self._jwks_uri: dict[str, tuple[str, float]] = {}
        self._forced: dict[str, float] = {}
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()          # guards the dicts only, never held across I/O

    def _single_flight(self, key: str, fetch):
        """Run `fetch` for `key` unless another caller is already running it; then wait for theirs."""
        with self._lock:
            event = self._inflight.get(key)
            leader = event is None
            if leader:
                event = self._inflight[key] = threading.Event()
        if not leader:
            event.wait(FETCH_DEADLINE_SECONDS * 2 + 1)
            return False
        try:
            fetch()
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()
        return True

    def jwks_uri(self, issuer: str, override: str | None) -> str:
        if override:
            return override
        hit = self._jwks_uri.get(issuer)
        if hit and self.clock() - hit[1] < CACHE_SECONDS:
            return hit[0]

        def fetch() -> None:
            doc = fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
            uri = doc.get("jwks_uri")
            if not isinstance(uri, str) or doc.get("issuer") not in (issuer, issuer.rstrip("/")):
                raise ScaiVaultError("service_unavailable", "the issuer's discovery document is unusable")
            self._jwks_uri[issuer] = (check_url(uri, "jwks_uri"), self.clock())

        self._single_flight("discovery:" + issuer, fetch)
        hit = self._jwks_uri.get(issuer)
        if not hit:
            raise ScaiVaultError("service_unavailable", "the issuer's discovery document could not be fetched")
        return hit[0]

    def _load(self, url: str) -> None:
        doc = fetch_json(url)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in doc.get("keys", []) if isinstance(doc.get("keys"), list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("kid"), str) and entry.get("kty") in ("RSA", "EC"):
                try:
                    keys[entry["kid"]] = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue
        self._keys[url] = (keys, self.clock())

    def key(self, url: str, kid: str) -> jwt.PyJWK | None:
        """The key `kid` at `url` (fetched when missing or stale; an unknown kid refetches, rate-limited)."""
        hit = self._keys.get(url)
        now = self.clock()
        if hit is None or now - hit[1] >= CACHE_SECONDS:
            self._single_flight("jwks:" + url, lambda: self._load(url))
            hit = self._keys.get(url)
            if hit is None:
                raise ScaiVaultError("service_unavailable", "the issuer's signing keys could not be fetched")
        if kid not in hit[0] and now - self._forced.get(url, float("-inf")) >= UNKNOWN_KID_REFETCH_SECONDS:
            self._forced[url] = now
            try:
                self._single_flight("jwks:" + url, lambda: self._load(url))
            except ScaiVaultError:
                pass       # keep the keys we have
            hit = self._keys.get(url, hit)
        return hit[0].get(kid)
