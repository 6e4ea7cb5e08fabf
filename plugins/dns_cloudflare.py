"""DNS provider `cloudflare`: TXT records through Cloudflare's API v4 (plain HTTPS via requests).

Settings: `api_token` (a token with Zone:DNS:Edit on the zones; sealed), `api_url`
(https://api.cloudflare.com/client/v4), `timeout` seconds (15). Propagation is checked against the
zone's Cloudflare name servers (or `nameservers`).
"""
from __future__ import annotations

from typing import Any

import requests

from scaivault.plugins import hookimpl
from scaivault.services.dns_providers import DnsProviderError, resolve_name_servers

API_URL = "https://api.cloudflare.com/client/v4"


class CloudflareProvider:
    def __init__(self, config: dict[str, Any]):
        token = config.get("api_token")
        if not isinstance(token, str) or not token:
            raise ValueError("api_token is required")
        self.api = str(config.get("api_url") or API_URL).rstrip("/")
        self.timeout = float(config.get("timeout", 15))
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.zones: dict[str, dict] = {}

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            resp = self.session.request(method, self.api + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise DnsProviderError(f"Cloudflare unreachable ({type(exc).__name__})") from None
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        if resp.status_code >= 400 or not doc.get("success", False):
            errors = doc.get("errors") or [{"message": f"HTTP {resp.status_code}"}]
            raise DnsProviderError("Cloudflare refused: " + "; ".join(str(e.get("message", e))[:120] for e in errors[:3]))
        return doc.get("result")

    def zone(self, name: str) -> dict:
        if name not in self.zones:
            found = self._call("GET", "/zones", params={"name": name})
            if not found:
                raise DnsProviderError(f"no zone named {name} is visible to this token")
            self.zones[name] = found[0]
        return self.zones[name]

    def verify(self, zones: list[str]) -> None:
        status = self._call("GET", "/user/tokens/verify")
        if not isinstance(status, dict) or status.get("status") != "active":
            raise DnsProviderError("the API token is not active")
        for name in zones:
            self.zone(name)

    def _records(self, zone_id: str, fqdn: str, value: str | None = None) -> list[dict]:
        params = {"type": "TXT", "name": fqdn}
        if value is not None:
            params["content"] = value
        return self._call("GET", f"/zones/{zone_id}/dns_records", params=params) or []

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        zone_id = self.zone(zone)["id"]
        if self._records(zone_id, fqdn, value):
            return
        self._call("POST", f"/zones/{zone_id}/dns_records",
                   json={"type": "TXT", "name": fqdn, "content": value, "ttl": ttl})

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        zone_id = self.zone(zone)["id"]
        for record in self._records(zone_id, fqdn, value):
            self._call("DELETE", f"/zones/{zone_id}/dns_records/{record['id']}")

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        return resolve_name_servers(self.zone(zone).get("name_servers") or [])


@hookimpl
def scaivault_dns_providers():
    return {"cloudflare": CloudflareProvider}
