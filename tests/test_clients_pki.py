"""Certificates through the clients, against a real `scaivault serve`: the SDK's pki namespace
(sync and async), the `scaivault pki` group in human and --json forms, and the MCP certificate tools."""
from __future__ import annotations

import stat

import pytest
from cryptography import x509

from scaivault_mcp.controls import MASK
from scaivault_sdk import SyncScaiVaultClient
from tests.clients_support import Both, admin_token, new_tenant, ok, run, run_mcp, vault  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(vault, scaikey):
    """A tenant with an EC root CA and a role for *.example.test."""
    token = admin_token(scaikey, new_tenant())
    with SyncScaiVaultClient(vault.url, token) as client:
        ca = client.pki.create_ca("root-ca", "Clients Test Root", key_type="ec", key_size=256, ttl="8760h")
        client.pki.create_role("web", ca.id, allowed_domains=["example.test"], allow_subdomains=True, max_ttl="72h")
    return token, ca


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_sdk_issues_lists_and_revokes(kind, vault, setup):
    token, ca = setup
    c = Both(kind, vault.url, token)
    try:
        assert [x.name for x in c.run(lambda v: v.pki.list_cas())] == ["root-ca"]
        assert c.run(lambda v: v.pki.get_ca(ca.id)).status == "active"
        root_pem = c.run(lambda v: v.pki.ca_certificate(ca.id))
        assert [r.name for r in c.run(lambda v: v.pki.list_roles())] == ["web"]
        issued = c.run(lambda v: v.pki.issue("web", f"{kind}.example.test", ttl="24h"))
        cert = x509.load_pem_x509_certificate(issued.certificate.encode())
        root = x509.load_pem_x509_certificate(root_pem.encode())
        cert.verify_directly_issued_by(root)
        assert issued.private_key.startswith("-----BEGIN")
        listed = c.run(lambda v: v.pki.certificates())
        assert issued.id in [x.id for x in listed]
        record = c.run(lambda v: v.pki.get_certificate(issued.id))
        assert record.common_name == f"{kind}.example.test" and record.revoked is False
        assert c.run(lambda v: v.pki.revoke_certificate(issued.id, reason="superseded")).revoked is True
        assert issued.id not in [x.id for x in c.run(lambda v: v.pki.certificates())]
        assert issued.id in [x.id for x in c.run(lambda v: v.pki.certificates(include_revoked=True))]
    finally:
        c.close()


def test_the_pki_command_group_in_human_and_json_forms(vault, setup, tmp_path):
    token, ca = setup
    env = {"HOME": str(tmp_path), "SCAIVAULT_URL": vault.url, "SCAIVAULT_TOKEN": token}
    assert "root-ca" in ok(["pki", "ca", "list"], env).out
    assert ok(["pki", "ca", "list", "--json"], env).json()["cas"][0]["id"] == ca.id
    assert "Clients Test Root" in ok(["pki", "ca", "get", ca.id], env).out
    assert ok(["pki", "ca", "get", ca.id, "--json"], env).json()["status"] == "active"
    assert ok(["pki", "ca", "get", ca.id, "--pem"], env).out.startswith("-----BEGIN CERTIFICATE-----")
    made = ok(["pki", "roles", "create", "api", "--ca", ca.id, "--allowed-domain", "api.test", "--allow-subdomains",
               "--json"], env).json()
    assert made["name"] == "api"
    assert "api" in ok(["pki", "roles", "list"], env).out
    assert {"web", "api"} <= {r["name"] for r in ok(["pki", "roles", "list", "--json"], env).json()["roles"]}
    assert ok(["pki", "roles", "get", "api", "--json"], env).json()["allowed_domains"] == ["api.test"]
    assert "api.test" in ok(["pki", "roles", "get", "api"], env).out
    pems = ok(["pki", "issue", "api", "-n", "a.api.test"], env).out
    assert pems.count("-----BEGIN CERTIFICATE-----") == 2 and "PRIVATE KEY-----" in pems
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    human = ok(["pki", "issue", "api", "-n", "b.api.test", "--cert-out", str(cert_file), "--key-out", str(key_file)],
               env).out
    assert human.startswith("issued cert_") and "PRIVATE" not in human
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and "PRIVATE KEY" in key_file.read_text()
    assert x509.load_pem_x509_certificate(cert_file.read_bytes()).subject.rfc4514_string() == "CN=b.api.test"
    issued = ok(["pki", "issue", "api", "-n", "c.api.test", "--json"], env).json()
    refused = run(["pki", "issue", "api", "-n", "evil.example.com"], env)
    assert refused.code in (3, 5) and "request req_" in refused.err
    # this server's KMS is not the HSM: an HSM-resident CA is refused, the error names the code
    no_hsm = run(["pki", "ca", "create", "hsm-ca", "--common-name", "HSM", "--key-storage", "hsm"], env)
    assert no_hsm.code != 0 and "hsm_not_configured" in no_hsm.err, no_hsm
    listed = ok(["pki", "certs", "list", "--json"], env).json()["certificates"]
    assert issued["id"] in [c["id"] for c in listed]
    assert "c.api.test" in ok(["pki", "certs", "list"], env).out
    assert ok(["pki", "certs", "get", issued["id"], "--json"], env).json()["common_name"] == "c.api.test"
    assert "c.api.test" in ok(["pki", "certs", "get", issued["id"]], env).out
    assert "revoked" in ok(["pki", "certs", "revoke", issued["id"], "--reason", "superseded"], env).out
    assert ok(["pki", "certs", "get", issued["id"], "--json"], env).json()["revoked"] is True
    assert "deleted PKI role api" in ok(["pki", "roles", "delete", "api"], env).out
    assert run(["pki", "roles", "get", "api"], env).code == 4


def test_the_mcp_certificate_tools_mask_keys_and_refuse_in_read_only(vault, setup):
    token, ca = setup
    tools, results = run_mcp(vault, token, [
        ("scaivault_issue_certificate", {"role": "web", "common_name": "mcp.example.test"}),
        ("scaivault_list_certificates", {}),
        ("scaivault_list_certificate_authorities", {}),
    ], SCAIVAULT_MASK_VALUES="true")
    (err, issued), (_, listed), (_, cas) = results
    assert err is False and issued["private_key"] == MASK and issued["certificate"].startswith("-----BEGIN")
    assert issued["id"] in [c["id"] for c in listed["certificates"]] and cas["cas"][0]["id"] == ca.id
    _, results = run_mcp(vault, token, [
        ("scaivault_issue_certificate", {"role": "web", "common_name": "ro.example.test"}),
        ("scaivault_revoke_certificate", {"certificate_id": issued["id"]}),
        ("scaivault_get_certificate", {"certificate_id": issued["id"]}),
    ], SCAIVAULT_READ_ONLY="true")
    (e1, b1), (e2, b2), (e3, record) = results
    assert e1 and b1["error"]["control"] == "SCAIVAULT_READ_ONLY"
    assert e2 and b2["error"]["control"] == "SCAIVAULT_READ_ONLY"
    assert e3 is False and record["revoked"] is False
