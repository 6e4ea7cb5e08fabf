"""A small fake of Google's OAuth token endpoint (JWT bearer grant) and the Cloud DNS v1 REST API.

The token endpoint checks the service account's signed assertion with its public key; Cloud DNS
serves managed-zone lookup by dnsName, rrset listing, and changes (applied at once, reported
`pending` first and `done` when read back, like the real API's asynchronous changes).
"""
from __future__ import annotations

import json
import secrets
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.json_http import JsonHandler


class FakeCloudDns:
    def __init__(self, project: str, zones: dict[str, str]):
        self.project = project
        self.zones = zones                           # managed zone name -> dnsName (no trailing dot)
        self.key = rsa.generate_private_key(65537, 2048)
        self.tokens: set[str] = set()
        self.rrsets: dict[tuple[str, str], dict] = {}
        self.changes: dict[str, dict] = {}
        fake = self

        class Handler(JsonHandler):
            def route(self, method: str):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if method == "POST" and url.path == "/token":
                    form = {k: v[0] for k, v in parse_qs(self.body().decode()).items()}
                    try:
                        jwt.decode(form.get("assertion", ""), fake.key.public_key(), algorithms=["RS256"],
                                   audience="https://oauth2.googleapis.com/token")   # google-auth's fixed audience
                    except jwt.PyJWTError:
                        return self.send_json(400, {"error": "invalid_grant"})
                    token = secrets.token_hex(16)
                    fake.tokens.add(token)
                    return self.send_json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})
                if self.headers.get("Authorization", "")[7:] not in fake.tokens:
                    return self.send_json(401, {"error": {"code": 401, "message": "Request had invalid credentials"}})
                prefix = f"/dns/v1/projects/{fake.project}/managedZones"
                if not url.path.startswith(prefix):
                    return self.send_json(404, {"error": {"code": 404, "message": "project not found"}})
                parts = [p for p in url.path[len(prefix):].split("/") if p]
                if not parts and method == "GET":
                    wanted = query.get("dnsName", "").rstrip(".")
                    return self.send_json(200, {"managedZones": [
                        {"name": n, "dnsName": d + ".", "nameServers": ["ns-cloud-a1.googledomains.invalid."]}
                        for n, d in fake.zones.items() if d == wanted]})
                if not parts or parts[0] not in fake.zones:
                    return self.send_json(404, {"error": {"code": 404, "message": "zone not found"}})
                zone = parts[0]
                if parts[1:] == ["rrsets"] and method == "GET":
                    found = [r for (z, _), r in fake.rrsets.items() if z == zone
                             and r["name"] == query.get("name") and r["type"] == query.get("type")]
                    return self.send_json(200, {"rrsets": found})
                if parts[1:] == ["changes"] and method == "POST":
                    doc = json.loads(self.body())
                    for old in doc.get("deletions", []):
                        if fake.rrsets.get((zone, old["name"])) != old:
                            return self.send_json(412, {"error": {"code": 412, "message": "deletion does not match"}})
                    for old in doc.get("deletions", []):
                        del fake.rrsets[(zone, old["name"])]
                    for new in doc.get("additions", []):
                        fake.rrsets[(zone, new["name"])] = new
                    change = {"id": str(len(fake.changes) + 1), "status": "pending", **doc}
                    fake.changes[change["id"]] = change
                    return self.send_json(200, change)
                if len(parts) == 3 and parts[1] == "changes" and parts[2] in fake.changes:
                    fake.changes[parts[2]]["status"] = "done"
                    return self.send_json(200, fake.changes[parts[2]])
                return self.send_json(404, {"error": {"code": 404, "message": "not found"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def service_account(self) -> dict:
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": self.project, "private_key_id": "k1", "private_key": pem,
                "client_email": f"acme@{self.project}.iam.gserviceaccount.com", "client_id": "1",
                "token_uri": self.url + "/token"}

    def txt(self, zone: str, fqdn: str) -> list[str]:
        return sorted(self.rrsets.get((zone, fqdn + "."), {}).get("rrdatas", []))

    def stop(self) -> None:
        self.server.shutdown()
