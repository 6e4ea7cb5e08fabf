"""Helpers for the PKI and ACME tests: PKI callers, a CA hierarchy in one call, openssl verify."""
from __future__ import annotations

import secrets as pyrandom
import subprocess
from pathlib import Path

from tests.secrets_support import ADMIN_SCOPES, Callers

PKI_SCOPES = ADMIN_SCOPES + ("pki:admin", "pki:issue")


def pki_admin(callers: Callers, tenant: str):
    """A tenant admin whose token holds the secret, policy and both PKI scopes."""
    return callers.user(f"pki-{pyrandom.token_hex(3)}@{tenant}.example", tenant, scopes=PKI_SCOPES, role="tenant_admin")


def name(prefix: str) -> str:
    return f"{prefix}-{pyrandom.token_hex(3)}"


def make_hierarchy(admin, *, key_type: str = "ec", key_size: int = 256, role: dict | None = None) -> dict:
    """Root, intermediate under it, and a role on the intermediate; returns their JSON."""
    root = admin.post("/v1/pki/ca", json={"name": name("root"), "common_name": "Test Root CA", "ca_type": "root",
                                          "key_type": key_type, "key_size": key_size, "ttl": "87600h"})
    assert root.status_code == 201, root.get_json()
    inter = admin.post("/v1/pki/ca", json={"name": name("inter"), "common_name": "Test Intermediate",
                                           "ca_type": "intermediate", "parent_ca_id": root.get_json()["id"],
                                           "key_type": key_type, "key_size": key_size, "ttl": "43800h"})
    assert inter.status_code == 201, inter.get_json()
    role_body = {"name": name("svc"), "ca_id": inter.get_json()["id"],
                 "allowed_domains": ["*.svc.cluster.local", "*.internal"], "max_ttl": "720h", **(role or {})}
    made = admin.post("/v1/pki/roles", json=role_body)
    assert made.status_code == 201, made.get_json()
    return {"root": root.get_json(), "intermediate": inter.get_json(), "role": made.get_json()}


def openssl_verify(tmp: Path, leaf_pem: str, chain: list[str], root_pem: str, *, crl_pems: list[str] = ()) -> \
        subprocess.CompletedProcess:
    """`openssl verify` of a leaf against root (trusted) and the intermediates (untrusted)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "root.pem").write_text(root_pem)
    (tmp / "untrusted.pem").write_text("".join(chain) or root_pem)
    (tmp / "leaf.pem").write_text(leaf_pem)
    args = ["openssl", "verify", "-CAfile", str(tmp / "root.pem"), "-untrusted", str(tmp / "untrusted.pem")]
    if crl_pems:
        (tmp / "crl.pem").write_text("".join(crl_pems))
        args += ["-crl_check_all", "-CRLfile", str(tmp / "crl.pem")]
    return subprocess.run(args + [str(tmp / "leaf.pem")], capture_output=True, text=True, timeout=30)


def crl_listing(anon, ca_id: str, serial_hex: str, timeout: float = 10.0):
    """The CA's CRL (fetched anonymously) once it lists `serial_hex`; re-signing runs in the background."""
    import time

    from cryptography import x509

    deadline = time.monotonic() + timeout
    while True:
        resp = anon.get(f"/v1/pki/ca/{ca_id}/crl")
        assert resp.status_code == 200, resp.data[:200]
        crl = x509.load_der_x509_crl(resp.data)
        if crl.get_revoked_certificate_by_serial_number(int(serial_hex, 16)) is not None or time.monotonic() > deadline:
            return crl
        time.sleep(0.05)
