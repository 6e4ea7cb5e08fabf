"""DNS provider `google` (alias `gcp`): TXT record sets in Google Cloud DNS through its REST API v1.

Settings: `service_account_json` (the key file's JSON, object or string; sealed), `project` (else the
key's project_id), `api_url` (https://dns.googleapis.com), `timeout` (15). Auth is google-auth's
service-account flow (extra `gcp`). Changes are waited for until `done`.
"""
from __future__ import annotations

import json
import time
from typing import Any

from scaivault.plugins import hookimpl
from scaivault.services.dns_providers import DnsProviderError, resolve_name_servers

SCOPE = "https://www.googleapis.com/auth/ndev.clouddns.readwrite"


class CloudDnsProvider:
    def __init__(self, config: dict[str, Any]):
        try:
            from google.auth.transport.requests import AuthorizedSession
            from google.oauth2 import service_account
        except ImportError:
            raise DnsProviderError("google-auth is missing: pip install 'scaivault[gcp]'") from None
        info = config.get("service_account_json")
        if isinstance(info, str):
            info = json.loads(info)
        if not isinstance(info, dict):
            raise ValueError("service_account_json is required (the service account key JSON)")
        credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        self.session = AuthorizedSession(credentials)
        self.project = str(config.get("project") or info.get("project_id") or "")
        if not self.project:
            raise ValueError("project is required")
        self.api = str(config.get("api_url") or "https://dns.googleapis.com").rstrip("/") + \
            f"/dns/v1/projects/{self.project}"
        self.timeout = float(config.get("timeout", 15))
        self.change_timeout = float(config.get("change_timeout", 120))
        self.zones: dict[str, dict] = {}

    def _call(self, method: str, path: str, **kwargs) -> dict:
        from google.auth.exceptions import GoogleAuthError
        from requests import RequestException

        try:
            resp = self.session.request(method, self.api + path, timeout=self.timeout, **kwargs)
        except GoogleAuthError as exc:
            raise DnsProviderError(f"Google refused the service account ({type(exc).__name__})") from None
        except RequestException as exc:
            raise DnsProviderError(f"Cloud DNS unreachable ({type(exc).__name__})") from None
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", {}).get("message", "")
            except ValueError:
                message = ""
            raise DnsProviderError(f"Cloud DNS refused: HTTP {resp.status_code} {message[:120]}".strip())
        return resp.json() if resp.content else {}

    def zone(self, name: str) -> dict:
        if name not in self.zones:
            found = self._call("GET", "/managedZones", params={"dnsName": name + "."}).get("managedZones") or []
            if not found:
                raise DnsProviderError(f"no managed zone for {name} in project {self.project}")
            self.zones[name] = found[0]
        return self.zones[name]

    def verify(self, zones: list[str]) -> None:
        for name in zones:
            self.zone(name)

    def _rrset(self, zone_name: str, fqdn: str) -> dict | None:
        found = self._call("GET", f"/managedZones/{zone_name}/rrsets", params={"name": fqdn + ".", "type": "TXT"})
        return (found.get("rrsets") or [None])[0]

    def _change(self, zone_name: str, additions: list[dict], deletions: list[dict]) -> None:
        change = self._call("POST", f"/managedZones/{zone_name}/changes",
                            json={"additions": additions, "deletions": deletions})
        deadline = time.monotonic() + self.change_timeout
        while change.get("status") != "done":
            if time.monotonic() > deadline:
                raise DnsProviderError("the Cloud DNS change did not complete in time")
            time.sleep(1)
            change = self._call("GET", f"/managedZones/{zone_name}/changes/{change['id']}")

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        zone_name = self.zone(zone)["name"]
        current = self._rrset(zone_name, fqdn)
        quoted = f'"{value}"'
        if current and quoted in current.get("rrdatas", []):
            return
        datas = (current or {}).get("rrdatas", []) + [quoted]
        self._change(zone_name, [{"name": fqdn + ".", "type": "TXT", "ttl": ttl, "rrdatas": datas}],
                     [current] if current else [])

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        zone_name = self.zone(zone)["name"]
        current = self._rrset(zone_name, fqdn)
        quoted = f'"{value}"'
        if not current or quoted not in current.get("rrdatas", []):
            return
        rest = [d for d in current["rrdatas"] if d != quoted]
        additions = [{**current, "rrdatas": rest}] if rest else []
        self._change(zone_name, additions, [current])

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        return resolve_name_servers(self.zone(zone).get("nameServers") or [])


@hookimpl
def scaivault_dns_providers():
    return {"google": CloudDnsProvider, "gcp": CloudDnsProvider}
