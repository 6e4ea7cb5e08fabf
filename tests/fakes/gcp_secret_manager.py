"""A small fake of the Secret Manager REST API (v1) for the federation backend's tests.

There is no Secret Manager emulator; this serves the JSON the real google-cloud-secret-manager
client sends over its REST transport: list, get, create secrets, addVersion, access the
latest version, delete. Secrets are kept as {id: [payload bytes, ...]}.
"""
from __future__ import annotations

import base64
import re
import threading
from http.server import ThreadingHTTPServer


import google_crc32c

from tests.fakes.servers import JsonHandler

SECRETS_RE = re.compile(r"^/v1/projects/([^/]+)/secrets(?:/([A-Za-z0-9_-]+))?"
                        r"(?::(addVersion)|/versions/(latest|\d+):(access))?$")


class FakeSecretManager:
    def __init__(self, project: str = "fed-project") -> None:
        self.project = project
        self.secrets: dict[str, list[bytes]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "FakeSecretManager":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def put(self, secret_id: str, payload: bytes) -> None:
        self.secrets.setdefault(secret_id, []).append(payload)

    def _secret(self, secret_id: str) -> dict:
        return {"name": f"projects/{self.project}/secrets/{secret_id}", "replication": {"automatic": {}}}

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        m = SECRETS_RE.match(path)
        if not m or m.group(1) != self.project:
            return 404, _error(404, "NOT_FOUND", "unknown path")
        secret_id, add, version, access = m.group(2), m.group(3), m.group(4), m.group(5)
        if secret_id is None:
            if method == "POST":
                new_id = query.get("secretId", [""])[0]
                if new_id in self.secrets:
                    return 409, _error(409, "ALREADY_EXISTS", "Secret already exists")
                self.secrets[new_id] = []
                return 200, self._secret(new_id)
            return 200, {"secrets": [self._secret(s) for s in sorted(self.secrets)], "totalSize": len(self.secrets)}
        if secret_id not in self.secrets:
            return 404, _error(404, "NOT_FOUND", f"Secret [{secret_id}] not found")
        versions = self.secrets[secret_id]
        if add:
            versions.append(base64.b64decode(body["payload"]["data"]))
            return 200, {"name": f"projects/{self.project}/secrets/{secret_id}/versions/{len(versions)}",
                         "state": "ENABLED"}
        if access:
            number = len(versions) if version == "latest" else int(version)
            if not 1 <= number <= len(versions):
                return 404, _error(404, "NOT_FOUND", "Secret Version not found")
            data = versions[number - 1]
            return 200, {"name": f"projects/{self.project}/secrets/{secret_id}/versions/{number}",
                         "payload": {"data": base64.b64encode(data).decode(),
                                     "dataCrc32c": str(google_crc32c.value(data))}}
        if method == "DELETE":
            del self.secrets[secret_id]
            return 200, {}
        return 200, self._secret(secret_id)

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def answer(self, method, path, query, headers, body):
                return (*fake.handle(method, path, query, body), {})

        return Handler


def _error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}
