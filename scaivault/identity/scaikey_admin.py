"""ScaiKey's admin API as the full sync uses it (spec/15 section 5): client-credentials token, paging."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator

import requests

from ..config import Settings
from ..errors import ScaiVaultError

log = logging.getLogger("scaivault.identity.scaikey")

PER_PAGE = 100
MAX_PAGES = 10_000
HTTP_TIMEOUT_SECONDS = 15.0


class ScaiKeyUnavailable(ScaiVaultError):
    code = "service_unavailable"


class ScaiKeyAdminClient:
    """Lists ScaiKey's partners, tenants, users, groups, members, applications and admin roles."""

    def __init__(self, settings: Settings, token_endpoint: str | None):
        if not settings.scaikey_url:
            raise ScaiKeyUnavailable(message="SCAIKEY_URL is not set; the identity sync needs ScaiKey")
        if not settings.scaikey_client_id or not settings.scaikey_client_secret_file:
            raise ScaiKeyUnavailable(
                message="SCAIKEY_CLIENT_ID and SCAIKEY_CLIENT_SECRET_FILE are needed for the identity sync")
        self.base = settings.scaikey_url.rstrip("/")
        self.client_id = settings.scaikey_client_id
        self.secret_file = settings.scaikey_client_secret_file
        self.token_endpoint = token_endpoint or self.base + "/api/v1/platform/oauth/token"
        self._token: str | None = None
        self._token_until = 0.0
        self.http = requests.Session()

    def _client_secret(self) -> str:
        try:
            with open(self.secret_file, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ScaiKeyUnavailable(message=f"SCAIKEY_CLIENT_SECRET_FILE cannot be read ({type(exc).__name__})") from None

    def token(self) -> str:
        if self._token and time.monotonic() < self._token_until:
            return self._token
        try:
            resp = self.http.post(self.token_endpoint, auth=(self.client_id, self._client_secret()),
                                  data={"grant_type": "client_credentials", "scope": "admin:read"},
                                  timeout=HTTP_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise ScaiKeyUnavailable(message=f"ScaiKey token endpoint unreachable ({type(exc).__name__})") from None
        if resp.status_code != 200:
            raise ScaiKeyUnavailable(message=f"ScaiKey refused the sync client's credentials (HTTP {resp.status_code})")
        body = resp.json()
        self._token = body["access_token"]
        self._token_until = time.monotonic() + max(30, int(body.get("expires_in", 3600)) - 60)
        return self._token

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            resp = self.http.get(self.base + path, params=params, timeout=HTTP_TIMEOUT_SECONDS,
                                 headers={"Authorization": f"Bearer {self.token()}"})
        except requests.RequestException as exc:
            raise ScaiKeyUnavailable(message=f"ScaiKey admin API unreachable ({type(exc).__name__})") from None
        if resp.status_code != 200:
            raise ScaiKeyUnavailable(message=f"ScaiKey admin API answered HTTP {resp.status_code} for {path}",
                                     details={"status": resp.status_code})
        try:
            return resp.json()
        except ValueError:
            raise ScaiKeyUnavailable(message=f"ScaiKey admin API sent no JSON for {path}") from None

    def pages(self, path: str, plural: str, **filters: Any) -> Iterator[dict]:
        """Every item of a paginated list: page=1.., items under data/items/<plural>, until exhausted."""
        seen = 0
        page_size_seen = 0
        for page in range(1, MAX_PAGES + 1):
            body = self._get(path, {**{k: v for k, v in filters.items() if v}, "page": page, "per_page": PER_PAGE})
            if isinstance(body, list):
                items, total = body, None
            elif isinstance(body, dict):
                items = next((body[k] for k in ("data", "items", plural) if isinstance(body.get(k), list)), [])
                total = body.get("total") if isinstance(body.get("total"), int) else None
            else:
                items, total = [], None
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("id") or item.get("user_id"), str):
                    yield item
            seen += len(items)
            page_size_seen = max(page_size_seen, len(items))
            # the server may cap per_page below what we asked, so "short page" means shorter than its own size
            if not items or (total is not None and seen >= total) or (total is None and len(items) < page_size_seen):
                return
        raise ScaiKeyUnavailable(message=f"ScaiKey pagination of {path} did not end")

    def partners(self) -> Iterator[dict]:
        return self.pages("/api/v1/admin/partners/", "partners")

    def tenants(self, partner_id: str | None = None) -> Iterator[dict]:
        return self.pages("/api/v1/admin/tenants/", "tenants", partner_id=partner_id)

    def users(self, tenant_id: str) -> Iterator[dict]:
        return self.pages("/api/v1/admin/users/", "users", tenant_id=tenant_id)

    def groups(self, tenant_id: str) -> Iterator[dict]:
        return self.pages("/api/v1/admin/groups/", "groups", tenant_id=tenant_id)

    def group_members(self, group_id: str) -> Iterator[dict]:
        return self.pages(f"/api/v1/admin/groups/{group_id}/members", "members")

    def applications(self) -> Iterator[dict]:
        return self.pages("/api/v1/admin/applications/", "applications")

    def agents(self) -> Iterator[dict]:
        return self.pages("/api/v1/admin/agents/", "agents")

    def admin_roles(self) -> Iterator[dict]:
        return self.pages("/api/v1/admin/admin-roles/", "admin_roles")
