"""A small fake of Cloudflare's API v4 DNS endpoints (zones, dns_records, token verify) over HTTP.

Only what the `cloudflare` DNS provider uses: bearer token check, zone lookup by name, TXT record
list (filtered by type, name, content), create and delete, with Cloudflare's response envelope.
"""
from __future__ import annotations

import json
import secrets
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fakes.json_http import JsonHandler


class FakeCloudflare:
    def __init__(self, token: str, zones: list[str]):
        self.token = token
        self.zones = {name: {"id": secrets.token_hex(16), "name": name, "status": "active",
                             "name_servers": ["ada.ns.cloudflare.invalid", "bob.ns.cloudflare.invalid"]}
                      for name in zones}
        self.records: dict[str, dict] = {}
        fake = self

        class Handler(JsonHandler):
            def _send(self, status: int, result=None, errors=None):
                self.send_json(status, {"success": errors is None, "errors": errors or [], "messages": [],
                                        "result": result})

            def route(self, method: str):
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._send(403, errors=[{"code": 9109, "message": "Invalid access token"}])
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = [p for p in url.path.split("/") if p][2:]     # drop client/v4
                if parts == ["user", "tokens", "verify"]:
                    return self._send(200, {"id": "tok", "status": "active"})
                if parts == ["zones"] and method == "GET":
                    return self._send(200, [z for z in fake.zones.values() if z["name"] == query.get("name")])
                if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
                    zone_id = parts[1]
                    if zone_id not in {z["id"] for z in fake.zones.values()}:
                        return self._send(404, errors=[{"code": 7003, "message": "Could not route"}])
                    if method == "GET" and len(parts) == 3:
                        found = [r for r in fake.records.values() if r["zone_id"] == zone_id
                                 and all(r.get(k) == v for k, v in query.items() if k in ("type", "name", "content"))]
                        return self._send(200, found)
                    if method == "POST" and len(parts) == 3:
                        doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                        record = {"id": secrets.token_hex(16), "zone_id": zone_id, **doc}
                        fake.records[record["id"]] = record
                        return self._send(200, record)
                    if method == "DELETE" and len(parts) == 4 and parts[3] in fake.records:
                        del fake.records[parts[3]]
                        return self._send(200, {"id": parts[3]})
                return self._send(404, errors=[{"code": 7000, "message": "No route for that URI"}])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def txt(self, fqdn: str) -> list[str]:
        return sorted(r["content"] for r in self.records.values() if r["name"] == fqdn and r["type"] == "TXT")

    def stop(self) -> None:
        self.server.shutdown()
