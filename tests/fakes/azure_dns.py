"""A small fake of Azure AD's client-credentials token endpoint and the Azure DNS ARM record-set API.

Only what the `azure` DNS provider uses: POST /{tenant}/oauth2/v2.0/token (client id and secret
checked), GET of a zone, and GET/PUT/DELETE of TXT record sets, with api-version required.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.json_http import JsonHandler

ZONE_RE = re.compile(r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Network/dnsZones/([^/]+)"
                     r"(?:/TXT/([^/]+))?$")


class FakeAzureDns:
    def __init__(self, tenant_id: str, client_id: str, client_secret: str, subscription: str, group: str,
                 zones: list[str]):
        self.credentials = (tenant_id, client_id, client_secret)
        self.scope = (subscription, group)
        self.zones = set(zones)
        self.tokens: set[str] = set()
        self.records: dict[tuple[str, str], dict] = {}
        fake = self

        class Handler(JsonHandler):
            def route(self, method: str):
                url = urlsplit(self.path)
                if method == "POST" and url.path.endswith("/oauth2/v2.0/token"):
                    form = {k: v[0] for k, v in parse_qs(self.body().decode()).items()}
                    tenant = url.path.split("/")[1]
                    if (tenant, form.get("client_id"), form.get("client_secret")) != fake.credentials \
                            or form.get("grant_type") != "client_credentials":
                        return self.send_json(401, {"error": "invalid_client"})
                    token = secrets.token_hex(16)
                    fake.tokens.add(token)
                    return self.send_json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in fake.tokens:
                    return self.send_json(401, {"error": {"code": "AuthenticationFailed"}})
                if parse_qs(url.query).get("api-version") != ["2018-05-01"]:
                    return self.send_json(400, {"error": {"code": "MissingApiVersionParameter"}})
                m = ZONE_RE.match(url.path)
                if not m or (m.group(1), m.group(2)) != fake.scope or unquote(m.group(3)) not in fake.zones:
                    return self.send_json(404, {"error": {"code": "ResourceNotFound"}})
                zone, relative = unquote(m.group(3)), m.group(4) and unquote(m.group(4))
                if relative is None:
                    if method == "GET":
                        return self.send_json(200, {"name": zone, "properties": {
                            "nameServers": ["ns1-01.azure-dns.invalid.", "ns2-01.azure-dns.invalid."]}})
                    return self.send_json(405, {"error": {"code": "MethodNotAllowed"}})
                key = (zone, relative)
                if method == "GET":
                    return self.send_json(200, fake.records[key]) if key in fake.records \
                        else self.send_json(404, {"error": {"code": "NotFound"}})
                if method == "PUT":
                    doc = json.loads(self.body())
                    fake.records[key] = {"name": relative, "type": "Microsoft.Network/dnszones/TXT", **doc}
                    return self.send_json(200, fake.records[key])
                if method == "DELETE":
                    fake.records.pop(key, None)
                    return self.send_json(200)
                return self.send_json(405, {"error": {"code": "MethodNotAllowed"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def txt(self, zone: str, relative: str) -> list[str]:
        record = self.records.get((zone, relative))
        if not record:
            return []
        return sorted("".join(r["value"]) for r in record["properties"]["TXTRecords"])

    def stop(self) -> None:
        self.server.shutdown()
