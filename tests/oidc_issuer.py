"""A small real OIDC issuer for the token-exchange tests, standing in for GitHub Actions'
token service and a Kubernetes API server: discovery, a JWKS with RS256 and ES256 keys,
and tokens minted with any claims. `delay` slows every answer (to test bounded fetches).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class OidcIssuer:
    def __init__(self, *, jwks_path: str = "/.well-known/jwks", trickle: float = 0.0):
        self.jwks_path = jwks_path
        self.trickle = trickle          # seconds between bytes of the JWKS answer (a slow issuer)
        self.keys = {"RS256": ("rsa-" + secrets.token_hex(3), rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                     "ES256": ("ec-" + secrets.token_hex(3), ec.generate_private_key(ec.SECP256R1()))}
        self.jwks_fetches = 0
        self.discovery_fetches = 0

    def start(self) -> "OidcIssuer":
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    issuer.discovery_fetches += 1
                    body = json.dumps({"issuer": issuer.url, "jwks_uri": issuer.url + issuer.jwks_path}).encode()
                elif self.path == issuer.jwks_path:
                    issuer.jwks_fetches += 1
                    body = json.dumps(issuer.jwks()).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if issuer.trickle and self.path == issuer.jwks_path:
                    for i in range(0, len(body), 64):
                        self.wfile.write(body[i:i + 64])
                        self.wfile.flush()
                        time.sleep(issuer.trickle)
                else:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def jwks(self) -> dict:
        out = []
        for alg, (kid, key) in self.keys.items():
            algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
            jwk = algo.to_jwk(key.public_key(), as_dict=True)
            jwk.update({"kid": kid, "alg": alg, "use": "sig"})
            out.append(jwk)
        return {"keys": out}

    def mint(self, *, alg: str = "RS256", expires_in: int = 300, issuer: str | None = None, **claims) -> str:
        now = int(time.time())
        payload = {"iss": issuer or self.url, "iat": now, "nbf": now, "exp": now + expires_in,
                   "jti": secrets.token_hex(8), **claims}
        kid, key = self.keys[alg]
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})

    def github(self, repository: str, *, ref: str = "refs/heads/main", environment: str | None = "production",
               aud: str = "scaivault", **kw) -> str:
        """A token shaped like GitHub Actions' OIDC tokens."""
        owner = repository.split("/")[0]
        claims = {"sub": f"repo:{repository}:" + (f"environment:{environment}" if environment else f"ref:{ref}"),
                  "aud": aud, "repository": repository, "repository_owner": owner, "ref": ref,
                  "workflow": "deploy", "event_name": "push", "run_id": "42"}
        if environment:
            claims["environment"] = environment
        claims.update(kw)
        return self.mint(**claims)

    def kubernetes(self, namespace: str, name: str, *, aud: str = "scaivault", alg: str = "ES256", **kw) -> str:
        """A token shaped like a projected Kubernetes service-account token."""
        return self.mint(alg=alg, sub=f"system:serviceaccount:{namespace}:{name}", aud=[aud],
                         **{"kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}}}, **kw)
