"""DNS provider `scaidns`: TXT records through the ScaiDNS API (/api/v1/domains, X-API-Key).

Settings: `api_key` (an `sdk_` key with domains:read, records:read and records:write/create/delete;
sealed), `base_url` (https://scaidns.scailabs.ai or a self-hosted instance), `timeout` (15).
Zones ("domains" in the API) are found by name; TXT content is sent zone-file formatted (quoted).
Propagation is checked against the zone's NS records (or `nameservers`).
"""
from __future__ import annotations

from typing import Any

import requests

from scaivault.plugins import hookimpl
from scaivault.services.dns_providers import DnsProviderError

BASE_URL = "https://scaidns.scailabs.ai"


def _unquote(content: str) -> str:
    text = content.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


class ScaiDnsProvider:
    def __init__(self, config: dict[str, Any]):
        key = config.get("api_key")
        if not isinstance(key, str) or not key:
            raise ValueError("api_key is required")
        self.base = str(config.get("base_url") or BASE_URL).rstrip("/") + "/api/v1"
        self.timeout = float(config.get("timeout", 15))
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = key
        self.domains: dict[str, dict] = {}

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            resp = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise DnsProviderError(f"ScaiDNS unreachable ({type(exc).__name__})") from None
        if resp.status_code >= 400:
            try:
                detail = str(resp.json().get("detail") or resp.json().get("error") or "")[:120]
            except ValueError:
                detail = ""
            raise DnsProviderError(f"ScaiDNS refused: HTTP {resp.status_code} {detail}".strip())
        return resp.json() if resp.content else {}

    def domain(self, zone: str) -> dict:
        if zone not in self.domains:
            found = self._call("GET", "/domains/", params={"search": zone, "page_size": 100}).get("data") or []
            exact = [d for d in found if str(d.get("name", "")).rstrip(".") == zone]
            if not exact:
                raise DnsProviderError(f"no ScaiDNS zone named {zone} is visible to this key")
            self.domains[zone] = exact[0]
        return self.domains[zone]

    def verify(self, zones: list[str]) -> None:
        for zone in zones:
            if self.domain(zone).get("status") not in (None, "active"):
                raise DnsProviderError(f"the ScaiDNS zone {zone} is not active")

    def _records(self, domain_id: str, fqdn: str) -> list[dict]:
        found = self._call("GET", f"/domains/{domain_id}/records", params={"type": "TXT", "name": fqdn})
        return [r for r in found.get("data") or [] if str(r.get("name", "")).rstrip(".") == fqdn
                and r.get("type") == "TXT"]

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        domain_id = self.domain(zone)["id"]
        if any(_unquote(r.get("content", "")) == value for r in self._records(domain_id, fqdn)):
            return
        relative = fqdn[: -len(zone) - 1] if fqdn.endswith("." + zone) else "@"
        self._call("POST", f"/domains/{domain_id}/records",
                   json={"name": relative, "type": "TXT", "content": f'"{value}"', "ttl": ttl})

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        domain_id = self.domain(zone)["id"]
        for record in self._records(domain_id, fqdn):
            if _unquote(record.get("content", "")) == value:
                self._call("DELETE", f"/domains/{domain_id}/records/{record['id']}")

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        return []      # the zone's NS records, looked up by the caller


@hookimpl
def scaivault_dns_providers():
    return {"scaidns": ScaiDnsProvider}
