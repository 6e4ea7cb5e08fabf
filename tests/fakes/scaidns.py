"""A small fake of the ScaiDNS API (docs: scaidns reference "Records", tutorial "Managing Domains").

Only what the `scaidns` DNS provider uses: X-API-Key check, GET /api/v1/domains/?search=, and
GET/POST/DELETE of records under /api/v1/domains/{id}/records (names read back fully qualified).
"""
from __future__ import annotations

import json
import secrets
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fakes.json_http import JsonHandler


class FakeScaiDns:
    def __init__(self, api_key: str, zones: list[str]):
        self.api_key = api_key
        self.domains = {"d_" + secrets.token_hex(6): {"name": z, "status": "active"} for z in zones}
        self.records: dict[str, dict] = {}
        fake = self

        class Handler(JsonHandler):
            def route(self, method: str):
                if self.headers.get("X-API-Key") != fake.api_key:
                    return self.send_json(401, {"detail": "Invalid API key"})
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = [p for p in url.path.split("/") if p][2:]        # drop api/v1
                if parts == ["domains"] and method == "GET":
                    found = [{"id": i, **d} for i, d in fake.domains.items() if query.get("search", "") in d["name"]]
                    return self.send_json(200, {"data": found, "total": len(found)})
                if len(parts) >= 3 and parts[0] == "domains" and parts[2] == "records" and parts[1] in fake.domains:
                    domain_id, zone = parts[1], fake.domains[parts[1]]["name"]
                    if method == "GET" and len(parts) == 3:
                        found = [r for r in fake.records.values() if r["domain_id"] == domain_id
                                 and (not query.get("type") or r["type"] == query["type"])
                                 and query.get("name", "") in r["name"]]
                        return self.send_json(200, {"data": found, "total": len(found), "domain_id": domain_id})
                    if method == "POST" and len(parts) == 3:
                        doc = json.loads(self.body())
                        name = zone if doc["name"] == "@" else f"{doc['name']}.{zone}"
                        record = {"id": "r_" + secrets.token_hex(6), "name": name + ".", "display_name": doc["name"],
                                  "type": doc["type"], "content": doc["content"], "ttl": doc.get("ttl", 3600),
                                  "disabled": False, "domain_id": domain_id}
                        fake.records[record["id"]] = record
                        return self.send_json(201, record)
                    if method == "DELETE" and len(parts) == 4 and parts[3] in fake.records:
                        del fake.records[parts[3]]
                        return self.send_json(204)
                return self.send_json(404, {"detail": "Not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def txt(self, fqdn: str) -> list[str]:
        return sorted(r["content"] for r in self.records.values() if r["name"] == fqdn + "." and r["type"] == "TXT")

    def stop(self) -> None:
        self.server.shutdown()
