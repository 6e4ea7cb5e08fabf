"""A small fake of the Cloud KMS REST API (encrypt, decrypt, key versions) for tests.

There is no Cloud KMS emulator; this serves the JSON the real google-cloud-kms client sends
over its REST transport: :encrypt and :decrypt with additional authenticated data and
CRC32C checksums, cryptoKeyVersions creation and :updatePrimaryVersion. A key whose name
ends in `-denied` answers 403, a disabled key 400 FAILED_PRECONDITION.
"""
from __future__ import annotations

import base64
import os
import re
import struct
import threading
from http.server import ThreadingHTTPServer


import google_crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.fakes.servers import JsonHandler

KEY_RE = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/:]+)"
                    r"(?::(encrypt|decrypt|updatePrimaryVersion)|/(cryptoKeyVersions))$")


def _crc(data: bytes) -> str:
    return str(google_crc32c.value(data))


class FakeCloudKms:
    def __init__(self) -> None:
        self.keys: dict[str, dict] = {}
        self.calls: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # clients keep connections alive: do not wait for their handler threads on shutdown
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def create_key(self, name: str) -> str:
        self.keys[name] = {"versions": {1: os.urandom(32)}, "primary": 1, "enabled": True}
        return name

    def start(self) -> "FakeCloudKms":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ API
    def handle(self, path: str, body: dict) -> tuple[int, dict]:
        m = KEY_RE.match(path)
        if not m:
            return 404, _error(404, "NOT_FOUND", "unknown path")
        name, verb, versions = m.group(1), m.group(2), m.group(3)
        self.calls.append(verb or versions)
        if name.endswith("-denied"):
            return 403, _error(403, "PERMISSION_DENIED", f"Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource '{name}'")
        key = self.keys.get(name)
        if key is None:
            return 404, _error(404, "NOT_FOUND", f"{name} not found.")
        if not key["enabled"]:
            return 400, _error(400, "FAILED_PRECONDITION", f"{name} is not enabled.")
        if versions:
            number = max(key["versions"]) + 1
            key["versions"][number] = os.urandom(32)
            return 200, {"name": f"{name}/cryptoKeyVersions/{number}", "state": "ENABLED"}
        if verb == "updatePrimaryVersion":
            key["primary"] = int(body["cryptoKeyVersionId"])
            return 200, {"name": name, "primary": {"name": f"{name}/cryptoKeyVersions/{key['primary']}"}}
        aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
        if verb == "encrypt":
            plaintext = base64.b64decode(body["plaintext"])
            if "plaintextCrc32c" in body and body["plaintextCrc32c"] != _crc(plaintext):
                return 400, _error(400, "INVALID_ARGUMENT", "plaintext_crc32c did not match")
            version = key["primary"]
            nonce = os.urandom(12)
            ciphertext = struct.pack(">I", version) + nonce + AESGCM(key["versions"][version]).encrypt(nonce, plaintext, aad)
            return 200, {"name": f"{name}/cryptoKeyVersions/{version}", "ciphertext": base64.b64encode(ciphertext).decode(),
                         "ciphertextCrc32c": _crc(ciphertext), "verifiedPlaintextCrc32c": "plaintextCrc32c" in body,
                         "verifiedAdditionalAuthenticatedDataCrc32c": "additionalAuthenticatedDataCrc32c" in body,
                         "protectionLevel": "SOFTWARE"}
        ciphertext = base64.b64decode(body["ciphertext"])
        try:
            (version,) = struct.unpack(">I", ciphertext[:4])
            plaintext = AESGCM(key["versions"][version]).decrypt(ciphertext[4:16], ciphertext[16:], aad)
        except (KeyError, InvalidTag, struct.error, ValueError):
            return 400, _error(400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
        return 200, {"plaintext": base64.b64encode(plaintext).decode(), "plaintextCrc32c": _crc(plaintext),
                     "usedPrimary": version == key["primary"], "protectionLevel": "SOFTWARE"}

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def answer(self, method, path, query, headers, body):
                if method != "POST":
                    return 405, _error(405, "UNIMPLEMENTED", "POST only"), {}
                return (*fake.handle(path, body), {})

        return Handler


def _error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}
