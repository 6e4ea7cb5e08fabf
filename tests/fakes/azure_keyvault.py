"""A small fake Azure Key Vault data plane over HTTPS: RSA-OAEP-256 wrapKey/unwrapKey, rotate,
and secrets (get, set, list, delete) for the federation backend.

There is no Key Vault emulator, and azure-keyvault-keys refuses plain HTTP, so this serves
TLS with a self-signed certificate (`ca_file` for the client to trust). It speaks the
challenge-based bearer authentication the SDK expects: a request without a token gets 401
with a WWW-Authenticate challenge, then the token must equal `token`. Reading the key (GET)
answers 403, like a vault that grants only wrap/unwrap, so every wrap goes to the server.
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import re
import ssl
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path


from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes.servers import JsonHandler

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
SECRET_RE = re.compile(r"^/(secrets|deletedsecrets)(?:/([A-Za-z0-9-]+))?(?:/([A-Za-z0-9]*))?/?$")
PATH_RE = re.compile(r"^/keys/([A-Za-z0-9-]+)(?:/(?!wrapkey$|unwrapkey$|rotate$)([A-Za-z0-9]*))?"
                     r"(?:/(wrapkey|unwrapkey|rotate))?/?$")


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def self_signed(directory: Path) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-keyvault.local")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "vault-cert.pem", directory / "vault-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


class FakeKeyVault:
    def __init__(self, directory: Path, token: str):
        self.token = token
        self.keys: dict[str, dict] = {}
        self.secrets: dict[str, list[tuple[str, str]]] = {}     # name -> [(version, value)], newest last
        self.deleted: set[str] = set()
        self.calls: list[str] = []
        self.ca_file, key_file = self_signed(directory)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # clients keep connections alive: do not wait for their handler threads on shutdown
        self._server.daemon_threads = True
        self._server.block_on_close = False
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_port}"

    def create_key(self, name: str) -> str:
        self.keys[name] = {"versions": {}, "enabled": True}
        self._new_version(name)
        return f"{self.url}/keys/{name}"

    def _new_version(self, name: str) -> str:
        version = f"v{len(self.keys[name]['versions']) + 1:031d}"[-32:]
        self.keys[name]["versions"][version] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[name]["latest"] = version
        return version

    def start(self) -> "FakeKeyVault":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _key_doc(self, name: str, version: str) -> dict:
        public = self.keys[name]["versions"][version].public_key().public_numbers()
        now = int(time.time())
        return {"key": {"kid": f"{self.url}/keys/{name}/{version}", "kty": "RSA", "key_ops": ["wrapKey", "unwrapKey"],
                        "n": _b64u(public.n.to_bytes((public.n.bit_length() + 7) // 8, "big")),
                        "e": _b64u(public.e.to_bytes(3, "big"))},
                "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable"}}

    def handle(self, method: str, path: str, headers, body: dict) -> tuple[int, dict, dict]:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return 401, {}, {"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/fake-tenant", '
                                                  'resource="https://vault.azure.net"'}
        if auth[7:] != self.token:
            return 401, {"error": {"code": "Unauthorized", "message": "AKV10032: Invalid issuer."}}, {}
        if SECRET_RE.match(path):
            return self.handle_secret(method, path, body)
        m = PATH_RE.match(path)
        if not m or m.group(1) not in self.keys:
            return 404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) was not found in this key vault."}}, {}
        name, version, op = m.group(1), m.group(2) or "", m.group(3)
        key = self.keys[name]
        self.calls.append(op or method)
        if method == "GET" and op is None:
            return 403, {"error": {"code": "Forbidden", "message": "The user does not have keys get permission.",
                                   "innererror": {"code": "ForbiddenByPolicy"}}}, {}
        if not key["enabled"]:
            return 403, {"error": {"code": "Forbidden", "message": "Operation wrapKey is not allowed on a disabled key."}}, {}
        if op == "rotate":
            return 200, self._key_doc(name, self._new_version(name)), {}
        version = version or key["latest"]
        private = key["versions"].get(version)
        if private is None:
            return 404, {"error": {"code": "KeyNotFound", "message": "no such key version"}}, {}
        kid = f"{self.url}/keys/{name}/{version}"
        if body.get("alg") != "RSA-OAEP-256":
            return 400, {"error": {"code": "BadParameter", "message": "unsupported algorithm"}}, {}
        value = _unb64u(body.get("value", ""))
        if op == "wrapkey":
            return 200, {"kid": kid, "value": _b64u(private.public_key().encrypt(value, OAEP))}, {}
        try:
            return 200, {"kid": kid, "value": _b64u(private.decrypt(value, OAEP))}, {}
        except ValueError:
            return 400, {"error": {"code": "BadParameter", "message": "The parameter is incorrect."}}, {}

    def _secret_doc(self, name: str, version: str, value: str | None) -> dict:
        now = int(time.time())
        doc = {"id": f"{self.url}/secrets/{name}/{version}", "contentType": "application/json",
               "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable"}}
        if value is not None:
            doc["value"] = value
        return doc

    def set_secret(self, name: str, value: str) -> str:
        version = f"{len(self.secrets.get(name, [])) + 1:032x}"
        self.secrets.setdefault(name, []).append((version, value))
        self.deleted.discard(name)
        return version

    def handle_secret(self, method: str, path: str, body: dict) -> tuple[int, dict, dict]:
        kind, name, version = SECRET_RE.match(path).groups()
        self.calls.append(f"secret:{method}")
        missing = 404, {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found."}}, {}
        if kind == "deletedsecrets":
            return (200, {"id": f"{self.url}/secrets/{name}", "recoveryId": f"{self.url}/deletedsecrets/{name}"}, {}) \
                if name in self.deleted else missing
        if name is None:
            items = [{"id": f"{self.url}/secrets/{n}", "attributes": {"enabled": True}, "contentType": "application/json"}
                     for n in sorted(self.secrets) if n not in self.deleted]
            return 200, {"value": items, "nextLink": None}, {}
        if method == "PUT":
            return 200, self._secret_doc(name, self.set_secret(name, body.get("value", "")), body.get("value", "")), {}
        versions = self.secrets.get(name)
        if not versions or name in self.deleted:
            return missing
        if method == "DELETE":
            self.deleted.add(name)
            return 200, {**self._secret_doc(name, versions[-1][0], None), "recoveryId": f"{self.url}/deletedsecrets/{name}"}, {}
        chosen = next((v for v in versions if v[0] == version), None) if version else versions[-1]
        return (200, self._secret_doc(name, *chosen), {}) if chosen else missing

    def _handler(self):
        fake = self

        class Handler(JsonHandler):
            def answer(self, method, path, query, headers, body):
                status, doc, extra = fake.handle(method, path, headers, body)
                return status, doc or None, extra

        return Handler
