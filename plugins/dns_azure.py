"""DNS provider `azure`: TXT record sets in Azure DNS through the ARM REST API (requests).

Settings: `subscription_id`, `resource_group`, `tenant_id`, `client_id`, `client_secret` (a service
principal with DNS Zone Contributor on the zones; the secret is sealed), `authority_url`
(https://login.microsoftonline.com), `management_url` (https://management.azure.com), `timeout` (15).
The token comes from the client-credentials grant and is reused until shortly before it expires.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import requests

from scaivault.plugins import hookimpl
from scaivault.services.dns_providers import DnsProviderError, resolve_name_servers

API_VERSION = "2018-05-01"


class AzureDnsProvider:
    def __init__(self, config: dict[str, Any]):
        for name in ("subscription_id", "resource_group", "tenant_id", "client_id", "client_secret"):
            if not isinstance(config.get(name), str) or not config[name]:
                raise ValueError(f"{name} is required")
        self.config = config
        self.authority = str(config.get("authority_url") or "https://login.microsoftonline.com").rstrip("/")
        self.management = str(config.get("management_url") or "https://management.azure.com").rstrip("/")
        self.timeout = float(config.get("timeout", 15))
        self.session = requests.Session()
        self._token: tuple[str, float] | None = None

    def _bearer(self) -> str:
        if self._token is None or self._token[1] < time.monotonic() + 60:
            try:
                resp = requests.post(f"{self.authority}/{quote(self.config['tenant_id'])}/oauth2/v2.0/token",
                                     data={"grant_type": "client_credentials", "client_id": self.config["client_id"],
                                           "client_secret": self.config["client_secret"],
                                           "scope": f"{self.management}/.default"}, timeout=self.timeout)
            except requests.RequestException as exc:
                raise DnsProviderError(f"Azure AD unreachable ({type(exc).__name__})") from None
            if resp.status_code != 200:
                raise DnsProviderError(f"Azure AD refused the service principal (HTTP {resp.status_code})")
            doc = resp.json()
            self._token = (doc["access_token"], time.monotonic() + float(doc.get("expires_in", 3600)))
        return self._token[0]

    def _zone_url(self, zone: str) -> str:
        return (f"{self.management}/subscriptions/{quote(self.config['subscription_id'])}/resourceGroups/"
                f"{quote(self.config['resource_group'])}/providers/Microsoft.Network/dnsZones/{quote(zone)}")

    def _call(self, method: str, url: str, *, ok_missing: bool = False, **kwargs) -> dict | None:
        try:
            resp = self.session.request(method, url, params={"api-version": API_VERSION}, timeout=self.timeout,
                                        headers={"Authorization": f"Bearer {self._bearer()}"}, **kwargs)
        except requests.RequestException as exc:
            raise DnsProviderError(f"Azure DNS unreachable ({type(exc).__name__})") from None
        if resp.status_code == 404 and ok_missing:
            return None
        if resp.status_code >= 400:
            try:
                code = resp.json().get("error", {}).get("code", "")
            except ValueError:
                code = ""
            raise DnsProviderError(f"Azure DNS refused: HTTP {resp.status_code} {code}".strip())
        return resp.json() if resp.content else {}

    def verify(self, zones: list[str]) -> None:
        for zone in zones:
            self._call("GET", self._zone_url(zone))

    def _record_url(self, zone: str, fqdn: str) -> str:
        relative = fqdn[: -len(zone) - 1] if fqdn.endswith("." + zone) else "@"
        return f"{self._zone_url(zone)}/TXT/{quote(relative)}"

    def _values(self, zone: str, fqdn: str) -> tuple[list[str], int]:
        found = self._call("GET", self._record_url(zone, fqdn), ok_missing=True)
        if not found:
            return [], 60
        props = found.get("properties", {})
        return ["".join(r.get("value", [])) for r in props.get("TXTRecords", [])], int(props.get("TTL", 60))

    def _put(self, zone: str, fqdn: str, values: list[str], ttl: int) -> None:
        self._call("PUT", self._record_url(zone, fqdn),
                   json={"properties": {"TTL": ttl, "TXTRecords": [{"value": [v]} for v in values]}})

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        values, _ = self._values(zone, fqdn)
        if value not in values:
            self._put(zone, fqdn, values + [value], ttl)

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        values, ttl = self._values(zone, fqdn)
        if value not in values:
            return
        rest = [v for v in values if v != value]
        if rest:
            self._put(zone, fqdn, rest, ttl)
        else:
            self._call("DELETE", self._record_url(zone, fqdn), ok_missing=True)

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        found = self._call("GET", self._zone_url(zone)) or {}
        return resolve_name_servers(found.get("properties", {}).get("nameServers") or [])


@hookimpl
def scaivault_dns_providers():
    return {"azure": AzureDnsProvider}
