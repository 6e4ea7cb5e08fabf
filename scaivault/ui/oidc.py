"""The admin UI as an OpenID Connect client of ScaiKey: authorization code with PKCE (S256).

ScaiKey's platform discovery document names the authorization and token endpoints
(spec/15 section 1.1); the UI is a public client (UI_CLIENT_ID, no secret), so the PKCE
verifier is what binds the code to this browser's login.
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
from urllib.parse import urlencode

import requests

from ..errors import ScaiVaultError

DISCOVERY_PATH = "/api/v1/platform/oauth/.well-known/openid-configuration"
HTTP_TIMEOUT_SECONDS = 5
DISCOVERY_TTL_SECONDS = 3600


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcClient:
    """Builds authorization URLs and redeems codes; the discovery document is cached an hour."""

    def __init__(self, scaikey_url: str, client_id: str):
        self.scaikey_url = scaikey_url.rstrip("/")
        self.client_id = client_id
        self._discovery: tuple[float, dict] | None = None
        self._lock = threading.Lock()   # guards the cache only, never held across the fetch

    def discovery(self) -> dict:
        with self._lock:
            cached = self._discovery
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_SECONDS:
            return cached[1]
        try:
            resp = requests.get(self.scaikey_url + DISCOVERY_PATH, timeout=HTTP_TIMEOUT_SECONDS)
            resp.raise_for_status()
            doc = resp.json()
            if not isinstance(doc, dict) or "authorization_endpoint" not in doc or "token_endpoint" not in doc:
                raise ValueError("discovery lacks authorization_endpoint or token_endpoint")
        except (requests.RequestException, ValueError) as exc:
            raise ScaiVaultError("service_unavailable",
                                 f"ScaiKey sign-in is unavailable ({type(exc).__name__})") from None
        with self._lock:
            self._discovery = (time.monotonic(), doc)
        return doc

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                 "scope": "openid profile email", "state": state, "nonce": nonce,
                 "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"}
        return self.discovery()["authorization_endpoint"] + "?" + urlencode(query)

    def redeem(self, code: str, redirect_uri: str, verifier: str) -> str:
        """The access token for an authorization code (single use at ScaiKey)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": self.client_id, "code_verifier": verifier}
        try:
            resp = requests.post(self.discovery()["token_endpoint"], data=form, timeout=HTTP_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise ScaiVaultError("service_unavailable",
                                 f"ScaiKey's token endpoint is unreachable ({type(exc).__name__})") from None
        body = resp.json() if resp.headers.get("Content-Type", "").startswith("application/json") else {}
        if resp.status_code != 200 or not isinstance(body.get("access_token"), str):
            reason = body.get("error") if isinstance(body.get("error"), str) else f"HTTP {resp.status_code}"
            raise ScaiVaultError("authentication_required", f"ScaiKey refused the sign-in ({reason[:64]})")
        return body["access_token"]

    def end_session_url(self, return_to: str) -> str | None:
        try:
            endpoint = self.discovery().get("end_session_endpoint")
        except ScaiVaultError:
            return None
        if not endpoint:
            return None
        return endpoint + "?" + urlencode({"client_id": self.client_id, "post_logout_redirect_uri": return_to})
