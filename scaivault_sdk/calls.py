"""The transport-agnostic core shared by the sync and async clients.

An API method builds a `Call` (what to send, whether repeating it is safe, how to read the
answer). `CallPlan.run(call)` is a generator that yields `Send` and `Sleep` actions and gets
the responses sent back: retries, backoff, token refresh and error mapping live here once,
and each client only drives it with its own I/O (httpx.Client + time.sleep, or
httpx.AsyncClient + asyncio.sleep).
"""
from __future__ import annotations

import base64
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import (AuthenticationError, ConfigurationError, ScaiVaultConnectionError, ValidationError, error_for,
                     parse_retry_after)

T = TypeVar("T")

SCAIKEY_DISCOVERY = "/api/v1/platform/oauth/.well-known/openid-configuration"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Send:
    """Ask the driver to send one request and send back the httpx.Response (or throw its error)."""

    method: str
    url: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    seconds: float


Action = Send | Sleep
Plan = Generator[Action, Any, T]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation. `idempotent`: repeating it after an unknown outcome cannot change the result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    idempotent: bool | None = None

    @property
    def safe_to_repeat(self) -> bool:
        return self.method in SAFE_METHODS if self.idempotent is None else self.idempotent


def secret_url(path: str, suffix: str = "", *, partner: bool = False) -> str:
    """/v1/secrets/<path>[:suffix], each segment percent-encoded (':' can never reach the server raw)."""
    base = "/v1/partner/secrets/" if partner else "/v1/secrets/"
    return base + quote(checked_path(path), safe="/") + suffix


def checked_path(path: str) -> str:
    """`path` without outer slashes; '.'/'..'/empty segments are refused here, since an HTTP client
    would resolve them and address a different URL than the one the caller named."""
    trimmed = path.strip("/")
    if not trimmed or any(seg in ("", ".", "..") for seg in trimmed.split("/")):
        raise ValidationError(f"invalid secret path {path[:200]!r}: empty, '.' or '..' segment", code="invalid_path",
                              status=400)
    return trimmed


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a Retry-After longer than `max_wait` is not waited for."""

    max_retries: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_wait: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number `attempt + 1`, or None when it is not worth waiting."""
        jittered = random.uniform(0, min(self.backoff_max, self.backoff_base * (2 ** attempt)))
        if retry_after is None:
            return jittered
        if retry_after > self.max_wait:
            return None
        return retry_after + random.uniform(0, self.backoff_base)


class PageWalk:
    """Keyset pagination state shared by both clients: the next cursor, and items up to `limit`."""

    def __init__(self, key: str, limit: int | None):
        self.key = key
        self.remaining = limit
        self.cursor: str | None = None
        self.done = limit is not None and limit <= 0

    def take(self, page: Any) -> list[Any]:
        items = list(getattr(page, self.key))
        if self.remaining is not None:
            items = items[:self.remaining]
            self.remaining -= len(items)
        self.cursor = page.cursor
        self.done = not page.has_more or not page.cursor or self.remaining == 0
        return items


RetryHook = Callable[[int, float, "httpx.Response | None", "Exception | None"], None]


class StaticToken:
    """A fixed bearer token (personal access token or a JWT obtained elsewhere)."""

    refreshable = False

    def __init__(self, token: str | None):
        self.token = token

    def token_plan(self) -> Plan[str | None]:
        return self.token
        yield  # pragma: no cover  (makes this a generator)

    def invalidate(self) -> None:
        pass


class ClientCredentials:
    """OAuth2 client credentials against ScaiKey, cached and renewed before it expires."""

    refreshable = True
    REFRESH_MARGIN = 60.0           # seconds before expiry (or a tenth of a short lifetime)

    def __init__(self, client_id: str, client_secret: str, *, scaikey_url: str | None = None,
                 token_url: str | None = None, scope: str | None = None, clock: Callable[[], float] = time.time):
        if not (scaikey_url or token_url):
            raise ConfigurationError("client credentials need scaikey_url (or token_url)", code="missing_scaikey_url")
        self.client_id = client_id
        self._secret = client_secret
        self._scaikey_url = scaikey_url.rstrip("/") if scaikey_url else None
        self._token_url = token_url
        self.scope = scope
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self.fetches = 0

    def invalidate(self) -> None:
        self._token = None

    def token_plan(self) -> Plan[str]:
        if self._token and self._clock() < self._renew_at:
            return self._token
        if self._token_url is None:
            discovery = yield Send("GET", self._scaikey_url + SCAIKEY_DISCOVERY)
            endpoint = discovery.json().get("token_endpoint") if discovery.status_code == 200 else None
            self._token_url = endpoint or self._scaikey_url + "/oauth/token"
        basic = base64.b64encode(f"{self.client_id}:{self._secret}".encode()).decode()
        form = {"grant_type": "client_credentials", **({"scope": self.scope} if self.scope else {})}
        response = yield Send("POST", self._token_url, data=form, headers={"Authorization": f"Basic {basic}"})
        self.fetches += 1
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not body.get("access_token"):
            raise AuthenticationError(f"ScaiKey refused the client credentials ({body.get('error', response.status_code)})",
                                      code=str(body.get("error") or "client_credentials_failed"),
                                      status=response.status_code)
        lifetime = float(body.get("expires_in") or 3600)
        self._token = body["access_token"]
        self._renew_at = self._clock() + lifetime - min(self.REFRESH_MARGIN, lifetime / 10)
        return self._token


class CallPlan:
    """Turns a Call into actions: authenticate, send, retry what is safe to retry, map errors."""

    def __init__(self, base_url: str, credentials, *, tenant_id: str | None = None, partner_id: str | None = None,
                 retry: RetryPolicy | None = None, user_agent: str = "scaivault-sdk",
                 on_retry: RetryHook | None = None):
        if not base_url:
            raise ConfigurationError("no ScaiVault URL: pass base_url or set SCAIVAULT_URL", code="missing_url")
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if tenant_id:
            self.headers["X-Tenant-ID"] = tenant_id
        if partner_id:
            self.headers["X-Partner-ID"] = partner_id

    def _token(self) -> Plan[str | None]:
        try:
            return (yield from self.credentials.token_plan())
        except httpx.TransportError as exc:
            raise ScaiVaultConnectionError(f"cannot reach ScaiKey: {type(exc).__name__}") from None

    def run(self, call: Call[T]) -> Plan[T]:
        attempt = 0
        refreshed = False
        while True:
            token = yield from self._token()
            headers = dict(self.headers)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            request = Send(call.method, self.base_url + call.path, params=drop_none(call.params or {}) or None,
                           json=call.json, headers=headers)
            try:
                response = yield request
            except httpx.TransportError as exc:
                # nothing left this machine when connecting failed; otherwise the server may have acted
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                delay = self.retry.delay(attempt) if attempt < self.retry.max_retries else None
                if delay is not None and (unsent or call.safe_to_repeat):
                    self._notify(attempt, delay, None, exc)
                    yield Sleep(delay)
                    attempt += 1
                    continue
                raise ScaiVaultConnectionError(
                    f"{call.method} {call.path.split('?')[0]} failed: {type(exc).__name__}",
                    maybe_applied=not unsent and not call.safe_to_repeat) from None
            status = response.status_code
            if status == 401 and self.credentials.refreshable and not refreshed:
                self.credentials.invalidate()      # revoked or expired early: one fresh token, one more try
                refreshed = True
                continue
            # 429 is decided before the request does anything, so any call may repeat it; a 503 only
            # an idempotent one (a proxy's 503 does not prove the write did not land)
            if status == 429 or (status == 503 and call.safe_to_repeat):
                if attempt < self.retry.max_retries:
                    delay = self.retry.delay(attempt, parse_retry_after(response.headers.get("Retry-After")))
                    if delay is not None:
                        self._notify(attempt, delay, response, None)
                        yield Sleep(delay)
                        attempt += 1
                        continue
            if status >= 400:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                raise error_for(status, body, response.headers)
            return call.parse(response)

    def _notify(self, attempt: int, delay: float, response, exc) -> None:
        if self.on_retry is not None:
            self.on_retry(attempt + 1, delay, response, exc)
