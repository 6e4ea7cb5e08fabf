"""ScaiVaultClient (async) and SyncScaiVaultClient: the same namespaces, two drivers of one core."""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable, Iterator

import httpx

from . import __version__
from .calls import (Call, CallPlan, ClientCredentials, PageWalk, Plan, RetryHook, RetryPolicy, Send, Sleep,
                    StaticToken)
from .errors import ConfigurationError
from .resources import AuditAPI, AuthAPI, PoliciesAPI, SecretsAPI, SystemAPI, TokensAPI

DEFAULT_TIMEOUT = 30.0
POOL = httpx.Limits(max_connections=50, max_keepalive_connections=10, keepalive_expiry=30)


def _credentials(token: str | None, client_id: str | None, client_secret: str | None, scaikey_url: str | None,
                 token_url: str | None, scope: str | None):
    if client_id or client_secret:
        if token:
            raise ConfigurationError("pass either token or client_id + client_secret, not both", code="ambiguous_auth")
        if not (client_id and client_secret):
            raise ConfigurationError("client credentials need both client_id and client_secret",
                                     code="missing_client_secret")
        return ClientCredentials(client_id, client_secret, scaikey_url=scaikey_url, token_url=token_url, scope=scope)
    return StaticToken(token)


class _ClientBase:
    def __init__(self, base_url: str, token: str | None = None, *, client_id: str | None = None,
                 client_secret: str | None = None, scaikey_url: str | None = None, token_url: str | None = None,
                 scope: str | None = None, tenant_id: str | None = None, partner_id: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None, verify: Any = True,
                 on_retry: RetryHook | None = None):
        self.credentials = _credentials(token, client_id, client_secret, scaikey_url, token_url, scope)
        self._plan = CallPlan(base_url, self.credentials, tenant_id=tenant_id, partner_id=partner_id, retry=retry,
                              user_agent=f"scaivault-sdk/{__version__}", on_retry=on_retry)
        self._http_options = {"timeout": timeout, "verify": verify, "limits": POOL}
        self.base_url = self._plan.base_url
        self.secrets = SecretsAPI(self)
        self.policies = PoliciesAPI(self)
        self.tokens = TokensAPI(self)
        self.auth = AuthAPI(self)
        self.audit = AuditAPI(self)
        self.system = SystemAPI(self)

    @staticmethod
    def _request_args(action: Send) -> dict[str, Any]:
        return {"params": action.params, "json": action.json, "data": action.data, "headers": action.headers}


class SyncScaiVaultClient(_ClientBase):
    """Blocking client; one pooled httpx.Client. Use as a context manager or call close()."""

    def __init__(self, base_url: str, token: str | None = None, **kwargs: Any):
        super().__init__(base_url, token, **kwargs)
        self._http = httpx.Client(**self._http_options)

    def _drive(self, plan: Plan) -> Any:
        try:
            action = next(plan)
            while True:
                if isinstance(action, Sleep):
                    time.sleep(action.seconds)
                    action = plan.send(None)
                    continue
                try:
                    response = self._http.request(action.method, action.url, **self._request_args(action))
                except httpx.TransportError as exc:
                    action = plan.throw(exc)
                    continue
                action = plan.send(response)
        except StopIteration as done:
            return done.value

    def _execute(self, call: Call) -> Any:
        return self._drive(self._plan.run(call))

    def _paginate(self, page_call: Callable[[str | None], Call], key: str, limit: int | None) -> Iterator[Any]:
        walk = PageWalk(key, limit)
        while not walk.done:
            yield from walk.take(self._execute(page_call(walk.cursor)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "SyncScaiVaultClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ScaiVaultClient(_ClientBase):
    """Asynchronous client (`async with ScaiVaultClient(...) as client:`); one pooled httpx.AsyncClient."""

    def __init__(self, base_url: str, token: str | None = None, **kwargs: Any):
        super().__init__(base_url, token, **kwargs)
        self._http = httpx.AsyncClient(**self._http_options)

    async def _drive(self, plan: Plan) -> Any:
        try:
            action = next(plan)
            while True:
                if isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                    action = plan.send(None)
                    continue
                try:
                    response = await self._http.request(action.method, action.url, **self._request_args(action))
                except httpx.TransportError as exc:
                    action = plan.throw(exc)
                    continue
                action = plan.send(response)
        except StopIteration as done:
            return done.value

    async def _execute(self, call: Call) -> Any:
        return await self._drive(self._plan.run(call))

    async def _paginate(self, page_call: Callable[[str | None], Call], key: str,
                        limit: int | None) -> AsyncIterator[Any]:
        walk = PageWalk(key, limit)
        while not walk.done:
            for item in walk.take(await self._execute(page_call(walk.cursor))):
                yield item

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "ScaiVaultClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
