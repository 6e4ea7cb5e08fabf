"""A small real HTTP server playing ScaiKey (spec/15) for tests.

It serves the platform and tenant discovery documents, a JWKS with RS256 and ES256 keys
(rotatable), the client-credentials token endpoint, the paginated admin list endpoints of
spec/15 section 5, and it signs webhooks exactly as spec/15 section 4.3. Tests mint tokens
with `mint(...)` and edit the directory (partners, tenants, users, groups, applications).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PLATFORM_DISCOVERY = "/api/v1/platform/oauth/.well-known/openid-configuration"
PLATFORM_JWKS = "/api/v1/platform/.well-known/jwks.json"
PLATFORM_TOKEN = "/api/v1/platform/oauth/token"
PLATFORM_AUTHORIZE = "/api/v1/platform/oauth/authorize"
ADMIN_RESOURCES = ("partners", "tenants", "users", "groups", "applications", "admin-roles", "agents")


@dataclass
class SigningKey:
    kid: str
    alg: str
    private_key: object

    def public_jwk(self) -> dict:
        algo = jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk = algo.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk


def _new_key(alg: str, generation: int) -> SigningKey:
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return SigningKey(f"rsa-{generation}-{secrets.token_hex(3)}", alg, private)
    private = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(f"ec-{generation}-{secrets.token_hex(3)}", alg, private)


@dataclass
class Directory:
    """ScaiKey's identity data as the admin API lists it; tests edit it freely."""

    partners: list[dict] = field(default_factory=list)
    tenants: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    # group id -> list of {"type": "user"|"group", "id": ...}
    members: dict[str, list[dict]] = field(default_factory=dict)
    applications: list[dict] = field(default_factory=list)
    admin_roles: list[dict] = field(default_factory=list)
    agents: list[dict] = field(default_factory=list)

    def add_partner(self, id: str, name: str | None = None, status: str = "ACTIVE", **extra) -> dict:
        row = {"id": id, "name": name or id, "slug": id.split("_", 1)[-1], "status": status, **extra}
        self.partners.append(row)
        return row

    def add_tenant(self, id: str, partner_id: str, name: str | None = None, status: str = "ACTIVE", **extra) -> dict:
        row = {"id": id, "partner_id": partner_id, "name": name or id, "slug": id.split("_", 1)[-1],
               "status": status, **extra}
        self.tenants.append(row)
        return row

    def add_user(self, id: str, tenant_id: str, email: str, status: str = "ACTIVE", **extra) -> dict:
        first = email.split("@")[0]
        row = {"id": id, "tenant_id": tenant_id, "email": email, "first_name": first.title(),
               "last_name": "Test", "display_name": f"{first.title()} Test", "status": status, **extra}
        self.users.append(row)
        return row

    def add_group(self, id: str, tenant_id: str, name: str, members: tuple = (), **extra) -> dict:
        row = {"id": id, "tenant_id": tenant_id, "name": name, "description": "", "group_type": "SECURITY", **extra}
        self.groups.append(row)
        self.members[id] = [{"type": "group" if m.startswith("grp_") else "user", "id": m} for m in members]
        return row

    def add_application(self, id: str, client_id: str, name: str, scope: str = "TENANT",
                        tenant_id: str | None = None, partner_id: str | None = None, **extra) -> dict:
        row = {"id": id, "client_id": client_id, "name": name, "scope": scope, "tenant_id": tenant_id,
               "partner_id": partner_id, "application_type": "SERVICE", **extra}
        self.applications.append(row)
        return row

    def remove(self, kind: str, id: str) -> None:
        rows = getattr(self, kind)
        rows[:] = [r for r in rows if r["id"] != id]

    def rows(self, resource: str) -> list[dict]:
        return list(getattr(self, resource.replace("-", "_")))


class ScaiKeyStandin:
    """Start with `start()`, stop with `stop()`; `url` is the base URL (SCAIKEY_URL)."""

    def __init__(self, *, discovery_has_jwks_uri: bool = True, issuer: str | None = None,
                 webhook_secret: str | None = None):
        self.discovery_has_jwks_uri = discovery_has_jwks_uri
        self._issuer_override = issuer
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(16)
        self.generation = 1
        self.keys: list[SigningKey] = [_new_key("RS256", 1), _new_key("ES256", 1)]
        self.directory = Directory()
        self.clients: dict[str, dict] = {}          # client_id -> {"secret", "scopes"}
        self.requests: list[tuple[str, str]] = []   # (method, path) seen, for assertions
        self.jwks_fetches = 0
        self.admin_delay = 0.0                      # seconds each admin list call sleeps
        self.stall_seconds = 0.0                    # seconds discovery and JWKS requests hang (unresponsive ScaiKey)
        self.fail_resource: str | None = None       # admin resource answering 500
        self.per_page_max = 50
        # browser sign-in (authorization code + PKCE): the user the authorize endpoint signs in,
        # as keyword arguments of mint(); None answers the browser with error=access_denied
        self.browser_user: dict | None = None
        self.public_clients: set[str] = set()       # client ids allowed to use authorization_code
        self._codes: dict[str, dict] = {}           # code -> what the token endpoint must check
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._url: str | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ScaiKeyStandin":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self._url = f"http://{host}:{port}"   # kept after stop(): tokens stay mintable
        self._thread = threading.Thread(target=self._server.serve_forever, name="scaikey-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._url is not None, "start() the stand-in first"
        return self._url

    @property
    def issuer(self) -> str:
        return self._issuer_override or self.url

    # ------------------------------------------------------------------ keys and tokens
    def rotate(self, *, keep_old: bool = True) -> None:
        """New RS256 and ES256 keys with new kids; the old ones stay published unless keep_old=False."""
        with self._lock:
            self.generation += 1
            fresh = [_new_key("RS256", self.generation), _new_key("ES256", self.generation)]
            self.keys = fresh + (self.keys if keep_old else [])

    def current_key(self, alg: str) -> SigningKey:
        return next(k for k in self.keys if k.alg == alg)

    def jwks(self) -> dict:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def mint(self, sub: str = "usr_test", email: str | None = None, tenant_id: str | None = None,
             partner_id: str | None = None, scopes=(), role: str | None = None, groups=(),
             alg: str = "RS256", expires_in: int = 3600, **claims) -> str:
        """A JWT signed with the current key for `alg`; extra keyword claims are added as-is."""
        now = int(time.time())
        payload: dict = {"iss": self.issuer, "sub": sub, "aud": "scaivault", "iat": now,
                         "exp": now + expires_in, "scope": " ".join(scopes), "client_id": "scaivault-tests",
                         "jti": secrets.token_hex(8)}
        if email is not None:
            payload["email"] = email
        if tenant_id is not None:
            payload["tenant_id"] = tenant_id
        if partner_id is not None:
            payload["partner_id"] = partner_id
        if role is not None:
            payload["role"] = role
        if groups:
            payload["groups"] = list(groups)
        payload.update({k: v for k, v in claims.items() if v is not None})
        key = self.current_key(alg)
        return jwt.encode(payload, key.private_key, algorithm=alg, headers={"kid": key.kid})

    def mint_service(self, client_id: str, scopes=(), tenant_id: str | None = None,
                     app_scope: str = "TENANT", **claims) -> str:
        """A client-credentials token (sub = client_id, token_type claim)."""
        extra = {"token_type": "client_credentials", "client_id": client_id, "app_scope": app_scope}
        if app_scope == "GLOBAL":
            extra["platform_token"] = True
        extra.update(claims)
        return self.mint(sub=client_id, tenant_id=tenant_id, scopes=scopes, **extra)

    def add_client(self, client_id: str, secret: str, scopes=("admin:read",)) -> None:
        self.clients[client_id] = {"secret": secret, "scopes": tuple(scopes)}

    # ------------------------------------------------------------------ webhooks
    def sign(self, body: bytes, timestamp: int | None = None, secret: str | None = None) -> str:
        ts = int(time.time()) if timestamp is None else timestamp
        digest = hmac.new((secret or self.webhook_secret).encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return f"t={ts},v1={digest}"

    def build_webhook(self, event_type: str, data: dict, *, resource: dict | None = None,
                      tenant_id: str | None = None, partner_id: str | None = None,
                      event_id: str | None = None, timestamp: int | None = None,
                      secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        """(raw body, headers) of one delivery, signed as ScaiKey signs (compact, sorted JSON)."""
        ts = int(time.time()) if timestamp is None else timestamp
        event_id = event_id or "evt_" + secrets.token_urlsafe(12)
        envelope = {
            "event_id": event_id, "event_type": event_type,
            "timestamp": datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z"),
            "resource": resource or {"type": event_type.split(".")[0], "id": data.get("id")},
            "actor": {"id": None, "type": "system"}, "data": data,
        }
        if tenant_id is not None:
            envelope["tenant_id"] = tenant_id
        if partner_id is not None:
            envelope["partner_id"] = partner_id
        body = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json", "User-Agent": "ScaiKey-Webhook/1.0",
            "X-ScaiKey-Webhook-ID": str(secrets.randbelow(10**6)), "X-ScaiKey-Event-ID": event_id,
            "X-ScaiKey-Event-Type": event_type, "X-ScaiKey-Timestamp": str(ts),
            "X-ScaiKey-Signature": self.sign(body, ts, secret),
        }
        return body, headers

    def send_webhook(self, url: str, event_type: str, data: dict, **kw) -> requests.Response:
        """POST one signed delivery to `url` (a running ScaiVault)."""
        body, headers = self.build_webhook(event_type, data, **kw)
        return requests.post(url, data=body, headers=headers, timeout=10)


def _b64decode_basic(value: str) -> tuple[str, str] | None:
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password
    except Exception:
        return None


def _handler_for(standin: ScaiKeyStandin):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, status: int, body: dict | list) -> None:
            raw = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass   # the client gave up on a stalled answer (stall_seconds)

        def do_GET(self):
            parts = urlsplit(self.path)
            path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
            standin.requests.append(("GET", path))
            if standin.stall_seconds and (path.endswith("/openid-configuration") or path.endswith("/jwks.json")):
                time.sleep(standin.stall_seconds)
            if path == PLATFORM_DISCOVERY or (path.startswith("/api/v1/auth/tenants/")
                                              and path.endswith("/.well-known/openid-configuration")):
                doc = {"issuer": standin.issuer, "token_endpoint": standin.url + PLATFORM_TOKEN,
                       "authorization_endpoint": standin.url + "/api/v1/platform/oauth/authorize",
                       "scopes_supported": ["openid", "profile", "email", "admin:read"],
                       "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
                if standin.discovery_has_jwks_uri:
                    doc["jwks_uri"] = standin.url + PLATFORM_JWKS
                return self._send(200, doc)
            if path in (PLATFORM_JWKS, "/.well-known/jwks.json") or (
                    path.startswith("/api/v1/auth/tenants/") and path.endswith("/.well-known/jwks.json")):
                standin.jwks_fetches += 1
                return self._send(200, standin.jwks())
            if path.startswith("/api/v1/admin/"):
                return self._admin(path[len("/api/v1/admin/"):].strip("/"), query)
            if path in (PLATFORM_AUTHORIZE, "/oauth/authorize"):
                return self._authorize(query)
            return self._send(404, {"detail": "Not Found"})

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _authorize(self, query: dict) -> None:
            """An already signed-in ScaiKey session: approve at once and send the browser back."""
            from urllib.parse import urlencode

            redirect_uri, state = query.get("redirect_uri", ""), query.get("state", "")
            if (query.get("client_id") not in standin.public_clients or query.get("response_type") != "code"
                    or query.get("code_challenge_method") != "S256" or not query.get("code_challenge")):
                return self._send(400, {"error": "invalid_request"})
            if standin.browser_user is None:
                return self._redirect(redirect_uri + "?" + urlencode({"error": "access_denied", "state": state}))
            code = secrets.token_urlsafe(24)
            standin._codes[code] = {"client_id": query["client_id"], "redirect_uri": redirect_uri,
                                    "challenge": query["code_challenge"], "user": dict(standin.browser_user)}
            return self._redirect(redirect_uri + "?" + urlencode({"code": code, "state": state}))

        def _redeem_code(self, form: dict) -> None:
            grant = standin._codes.pop(form.get("code", ""), None)   # codes are single-use
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if (grant is None or grant["client_id"] != form.get("client_id")
                    or grant["redirect_uri"] != form.get("redirect_uri")
                    or not hmac.compare_digest(grant["challenge"], challenge)):
                return self._send(400, {"error": "invalid_grant"})
            token = standin.mint(**grant["user"])
            return self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

        def _admin(self, rest: str, query: dict) -> None:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                return self._send(401, {"detail": "Not authenticated"})
            try:
                claims = jwt.decode(auth[7:], options={"verify_signature": False})
            except jwt.PyJWTError:
                return self._send(401, {"detail": "Invalid token"})
            kid = jwt.get_unverified_header(auth[7:]).get("kid")
            if kid not in {k.kid for k in standin.keys} or claims.get("exp", 0) < time.time():
                return self._send(401, {"detail": "Invalid token"})
            if not {"admin:read", "admin:write"} & set(claims.get("scope", "").split()):
                return self._send(403, {"detail": "Platform token requires admin:read or admin:write scope"})
            if standin.admin_delay:
                time.sleep(standin.admin_delay)
            segments = rest.split("/")
            resource = segments[0]
            if resource == "groups" and len(segments) == 3 and segments[2] == "members":
                rows = [dict(m) for m in standin.directory.members.get(segments[1], [])]
                return self._page(rows, query)
            if resource not in ADMIN_RESOURCES:
                return self._send(404, {"detail": "Not Found"})
            if standin.fail_resource == resource:
                return self._send(500, {"detail": "Internal Server Error"})
            rows = standin.directory.rows(resource)
            if len(segments) == 2 and segments[1]:
                match = [r for r in rows if r["id"] == segments[1]]
                return self._send(200, match[0]) if match else self._send(404, {"detail": "Not Found"})
            for key in ("tenant_id", "partner_id", "status"):
                if key in query:
                    rows = [r for r in rows if r.get(key) == query[key]]
            return self._page(rows, query)

        def _page(self, rows: list[dict], query: dict) -> None:
            try:
                page = max(1, int(query.get("page", 1)))
                per_page = min(standin.per_page_max, max(1, int(query.get("per_page", 20))))
            except ValueError:
                return self._send(422, {"detail": [{"loc": ["query", "page"], "msg": "not an integer"}]})
            start = (page - 1) * per_page
            return self._send(200, {"items": rows[start:start + per_page], "total": len(rows),
                                    "page": page, "per_page": per_page})

        def do_POST(self):
            parts = urlsplit(self.path)
            standin.requests.append(("POST", parts.path))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if parts.path not in (PLATFORM_TOKEN, "/oauth/token"):
                return self._send(404, {"detail": "Not Found"})
            form = {k: v[-1] for k, v in parse_qs(raw).items()}
            client_id, secret = form.get("client_id"), form.get("client_secret")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                pair = _b64decode_basic(auth[6:])
                if pair:
                    client_id, secret = pair
            if form.get("grant_type") == "authorization_code":
                return self._redeem_code(form)
            client = standin.clients.get(client_id or "")
            if form.get("grant_type") != "client_credentials":
                return self._send(400, {"error": "unsupported_grant_type"})
            if client is None or not hmac.compare_digest(client["secret"], secret or ""):
                return self._send(401, {"error": "invalid_client"})
            wanted = form.get("scope", "").split() or list(client["scopes"])
            granted = [s for s in wanted if s in client["scopes"]]
            token = standin.mint_service(client_id, scopes=granted, app_scope="GLOBAL")
            return self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                                    "scope": " ".join(granted)})

    return Handler
