"""Internal CAs, roles, issue and sign, inventory, revocation and CRL over HTTP (spec/40, issue 12)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.pki_support import crl_listing, make_hierarchy, name, openssl_verify, pki_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, grant, new_tenant

BASE = "http://127.0.0.1:8443"


@pytest.fixture(scope="module")
def app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS, BASE_URL=BASE)


@pytest.fixture
def callers(app, scaikey):
    return Callers(scaikey, app.test_client())


@pytest.fixture
def tenant():
    return new_tenant()


@pytest.fixture
def admin(callers, tenant):
    return pki_admin(callers, tenant)


@pytest.fixture
def anon(app):
    return app.test_client()


def db(app):
    return app.extensions["scaivault"].db


def _csr(cn: str, sans: list[str], key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


# ----------------------------------------------------------------- done-when: chain verifies
def test_root_intermediate_and_role_issue_a_leaf_that_openssl_verify_accepts(admin, anon, tmp_path):
    h = make_hierarchy(admin)
    root, inter = h["root"], h["intermediate"]
    assert root["id"].startswith("ca_") and root["is_active"] and root["certificates_issued"] == 0
    assert inter["parent_ca_id"] == root["id"] and inter["key_type"] == "ec" and inter["key_size"] == 256
    resp = admin.post(f"/v1/pki/issue/{h['role']['name']}",
                      json={"common_name": "billing.svc.cluster.local", "alt_names": ["reporting.svc.cluster.local"],
                            "ttl": "168h"})
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    assert set(doc) >= {"id", "serial_number", "certificate", "private_key", "ca_chain", "expires_at"}
    root_pem = anon.get(f"/v1/pki/ca/{root['id']}/certificate").data.decode()
    assert root_pem.startswith("-----BEGIN CERTIFICATE-----")
    result = openssl_verify(tmp_path, doc["certificate"], doc["ca_chain"], root_pem)
    assert result.returncode == 0, result.stdout + result.stderr
    leaf = x509.load_pem_x509_certificate(doc["certificate"].encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == ["billing.svc.cluster.local", "reporting.svc.cluster.local"]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == pytest.approx(168 * 3600, abs=60)
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"{BASE}/v1/pki/ca/{inter['id']}/crl"
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == f"{BASE}/v1/pki/ca/{inter['id']}/certificate"
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    # the private key matches, and is not kept (store_private_keys false)
    key = serialization.load_pem_private_key(doc["private_key"].encode(), None)
    assert key.public_key() == leaf.public_key()
    secret = admin.get(f"/v1/secrets/{doc['secret_path']}").get_json()
    assert secret["secret_type"] == "certificate" and secret["data"]["cert_pem"] == doc["certificate"]
    assert "key_pem" not in secret["data"]
    assert doc["secret_path"] == f"pki/{inter['name']}/{doc['serial_number']}"


def test_rsa_4096_root_and_der_export(admin, anon):
    made = admin.post("/v1/pki/ca", json={"name": name("rsa"), "common_name": "RSA Root", "ca_type": "root",
                                          "key_type": "rsa", "key_size": 4096, "validity_days": 30})
    assert made.status_code == 201, made.get_json()
    ca_id = made.get_json()["id"]
    der = anon.get(f"/v1/pki/ca/{ca_id}/certificate", headers={"Accept": "application/pkix-cert"})
    assert der.status_code == 200 and der.mimetype == "application/pkix-cert"
    cert = x509.load_der_x509_certificate(der.data)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 4096
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_private_key_is_sealed_at_rest_and_never_returned(app, admin):
    h = make_hierarchy(admin)
    for ca in (h["root"], h["intermediate"]):
        assert "private_key" not in ca and "sealed_key" not in ca
        got = admin.get(f"/v1/pki/ca/{ca['id']}").get_json()
        assert not any("PRIVATE KEY" in str(v) for v in got.values())
        row = db(app).one("SELECT sealed_key FROM pki_cas WHERE id = :id", id=ca["id"])
        raw = bytes(row["sealed_key"])
        assert raw[:2] == b"SV" and b"PRIVATE KEY" not in raw
    # moved to another CA's row, the sealed key does not open (bound to its CA id)
    a, b = h["root"]["id"], h["intermediate"]["id"]
    try:
        db(app).execute("UPDATE pki_cas SET sealed_key = (SELECT sealed_key FROM pki_cas WHERE id = :a) WHERE id = :b",
                        a=a, b=b)
        resp = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "x.internal"})
        assert resp.status_code == 500 and error_code(resp) == "decryption_failed"
    finally:
        pass


def test_out_of_role_names_ttl_and_ip_sans_are_refused_naming_the_value(admin):
    h = make_hierarchy(admin)
    role = h["role"]["name"]
    cases = [({"common_name": "evil.example.com"}, "evil.example.com"),
             ({"common_name": "a.b.svc.cluster.local"}, "a.b.svc.cluster.local"),
             ({"common_name": "ok.internal", "alt_names": ["bad.example.org"]}, "bad.example.org"),
             ({"common_name": "ok.internal", "ip_sans": ["10.0.0.1"]}, "10.0.0.1"),
             ({"common_name": "ok.internal", "ttl": "721h"}, "721h"),
             ({"common_name": "*.internal"}, "*.internal")]
    for body, value in cases:
        resp = admin.post(f"/v1/pki/issue/{role}", json=body)
        assert resp.status_code == 400, (body, resp.get_json())
        err = resp.get_json()["error"]
        assert err["code"] == "certificate_not_allowed" and err["details"]["value"] == value
        assert value in err["message"]
    assert admin.post(f"/v1/pki/issue/{role}", json={"common_name": "ok.internal", "ttl": "720h"}).status_code == 201
    assert error_code(admin.post("/v1/pki/issue/nope", json={"common_name": "x.internal"})) == "role_not_found"
    assert error_code(admin.post(f"/v1/pki/issue/{role}", json={"common_name": "x.internal", "ttl": "soon"})) \
        == "invalid_duration"


def test_subdomain_bare_wildcard_and_ip_rules(admin):
    h = make_hierarchy(admin, role={"allowed_domains": ["example.net"], "allow_subdomains": True,
                                    "allow_bare_domains": True, "allow_wildcards": True, "allow_ip_sans": True})
    role = h["role"]["name"]
    for cn in ("example.net", "a.example.net", "a.b.example.net", "*.example.net"):
        resp = admin.post(f"/v1/pki/issue/{role}", json={"common_name": cn, "ip_sans": ["192.0.2.7"]})
        assert resp.status_code == 201, (cn, resp.get_json())
    assert error_code(admin.post(f"/v1/pki/issue/{role}", json={"common_name": "badexample.net"})) \
        == "certificate_not_allowed"


def test_sign_applies_role_checks_to_the_csr_names_and_key(admin, tmp_path, anon):
    h = make_hierarchy(admin, role={"key_type": "ec"})
    role = h["role"]["name"]
    good = admin.post(f"/v1/pki/sign/{role}", json={"csr": _csr("api.internal", ["api.internal", "web.internal"]),
                                                    "ttl": "24h"})
    assert good.status_code == 201, good.get_json()
    doc = good.get_json()
    assert "private_key" not in doc
    root_pem = anon.get(f"/v1/pki/ca/{h['root']['id']}/certificate").data.decode()
    assert openssl_verify(tmp_path, doc["certificate"], doc["ca_chain"], root_pem).returncode == 0
    bad = admin.post(f"/v1/pki/sign/{role}", json={"csr": _csr("api.internal", ["api.evil.com"])})
    assert bad.status_code == 400 and bad.get_json()["error"]["details"]["value"] == "api.evil.com"
    rsa_csr = _csr("api.internal", [], rsa.generate_private_key(65537, 2048))
    wrong_key = admin.post(f"/v1/pki/sign/{role}", json={"csr": rsa_csr})
    assert wrong_key.status_code == 400 and error_code(wrong_key) == "certificate_not_allowed"
    assert error_code(admin.post(f"/v1/pki/sign/{role}", json={"csr": "garbage"})) == "invalid_request"


def test_revoked_serial_appears_in_the_anonymous_crl_and_openssl_rejects_it(admin, anon, tmp_path):
    h = make_hierarchy(admin)
    inter = h["intermediate"]
    issued = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "gone.internal"}).get_json()
    resp = admin.post(f"/v1/pki/certificates/{issued['id']}/revoke", json={"reason": "key_compromise"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["revoked"] and resp.get_json()["revocation_reason"] == "key_compromise"
    crl = crl_listing(anon, inter["id"], issued["serial_number"])
    assert anon.get(f"/v1/pki/ca/{inter['id']}/crl").mimetype == "application/pkix-crl"
    entry = crl.get_revoked_certificate_by_serial_number(int(issued["serial_number"], 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert crl.next_update_utc > datetime.now(timezone.utc)
    inter_cert = x509.load_pem_x509_certificate(anon.get(f"/v1/pki/ca/{inter['id']}/certificate").data)
    assert crl.is_signature_valid(inter_cert.public_key())
    pem = anon.get(f"/v1/pki/ca/{inter['id']}/crl?format=pem")
    assert pem.data.startswith(b"-----BEGIN X509 CRL-----")
    root_crl = anon.get(f"/v1/pki/ca/{h['root']['id']}/crl?format=pem").data.decode()
    root_pem = anon.get(f"/v1/pki/ca/{h['root']['id']}/certificate").data.decode()
    result = openssl_verify(tmp_path, issued["certificate"], issued["ca_chain"], root_pem,
                            crl_pems=[pem.data.decode(), root_crl])
    assert result.returncode != 0 and "revoked" in (result.stdout + result.stderr)
    # revoking again is idempotent; a bad reason is refused
    assert admin.post(f"/v1/pki/certificates/{issued['id']}/revoke", json={}).status_code == 200
    other = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "x.internal"}).get_json()
    assert error_code(admin.post(f"/v1/pki/certificates/{other['id']}/revoke", json={"reason": "bored"})) \
        == "validation_error"


def test_crl_regeneration_now_returns_pem_and_next_update(admin):
    h = make_hierarchy(admin)
    ca = h["intermediate"]["id"]
    first = admin.post(f"/v1/pki/ca/{ca}/crl")
    assert first.status_code == 200, first.get_json()
    second = admin.post(f"/v1/pki/ca/{ca}/crl").get_json()
    assert second["crl_number"] == first.get_json()["crl_number"] + 1
    assert second["crl"].startswith("-----BEGIN X509 CRL-----") and second["next_update"].endswith("Z")


def test_expired_certificates_drop_out_of_the_crl(app, admin, anon):
    h = make_hierarchy(admin)
    inter = h["intermediate"]["id"]
    a = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "a.internal"}).get_json()
    b = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "b.internal"}).get_json()
    for c in (a, b):
        admin.post(f"/v1/pki/certificates/{c['id']}/revoke", json={"reason": "superseded"})
    db(app).execute("UPDATE pki_certificates SET not_after = now() - interval '1 minute' WHERE id = :id", id=a["id"])
    admin.post(f"/v1/pki/ca/{inter}/crl")
    crl = x509.load_der_x509_crl(anon.get(f"/v1/pki/ca/{inter}/crl").data)
    assert crl.get_revoked_certificate_by_serial_number(int(a["serial_number"], 16)) is None
    assert crl.get_revoked_certificate_by_serial_number(int(b["serial_number"], 16)) is not None


def test_revoking_a_root_cascades_to_intermediates_and_their_leaves(admin, anon):
    h = make_hierarchy(admin)
    leaf = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "l.internal"}).get_json()
    resp = admin.post(f"/v1/pki/ca/{h['root']['id']}/revoke", json={"reason": "ca_compromise"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["cas_revoked"] == 2 and resp.get_json()["certificates_revoked"] == 2
    assert admin.get(f"/v1/pki/ca/{h['intermediate']['id']}").get_json()["status"] == "revoked"
    assert admin.get(f"/v1/pki/certificates/{leaf['id']}").get_json()["revoked"]
    root_crl = crl_listing(anon, h["root"]["id"], h["intermediate"]["serial_number"])
    inter_serial = int(h["intermediate"]["serial_number"], 16)
    assert root_crl.get_revoked_certificate_by_serial_number(inter_serial) is not None
    inter_crl = crl_listing(anon, h["intermediate"]["id"], leaf["serial_number"])
    assert inter_crl.get_revoked_certificate_by_serial_number(int(leaf["serial_number"], 16)) is not None
    refused = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "m.internal"})
    assert refused.status_code == 409 and error_code(refused) == "ca_revoked"


def test_intermediate_signed_by_an_outside_root_via_csr(admin, anon, tmp_path):
    # the outside root: made here with cryptography, never seen by ScaiVault's key store
    root_key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Outside Root")])
    now = datetime.now(timezone.utc)
    from datetime import timedelta
    root = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(root_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA384()))
    made = admin.post("/v1/pki/ca", json={"name": name("ext"), "common_name": "Ext Intermediate",
                                          "ca_type": "intermediate", "key_type": "ec", "key_size": 384})
    assert made.status_code == 201, made.get_json()
    pending = made.get_json()
    assert pending["status"] == "pending" and pending["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")
    csr = x509.load_pem_x509_csr(pending["csr"].encode())
    inter = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(subject).public_key(csr.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
             .not_valid_after(now + timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(root_key, hashes.SHA384()))
    root_pem = root.public_bytes(serialization.Encoding.PEM).decode()
    inter_pem = inter.public_bytes(serialization.Encoding.PEM).decode()
    # issuing from a pending CA is refused
    role_try = admin.post("/v1/pki/roles", json={"name": name("r"), "ca_id": pending["id"], "allowed_domains": ["x.io"]})
    assert error_code(role_try) == "ca_not_ready"
    wrong = admin.post(f"/v1/pki/ca/{pending['id']}/certificate", json={"certificate": root_pem})
    assert wrong.status_code == 400
    installed = admin.post(f"/v1/pki/ca/{pending['id']}/certificate", json={"certificate": inter_pem,
                                                                            "ca_chain": [root_pem]})
    assert installed.status_code == 200, installed.get_json()
    assert installed.get_json()["status"] == "active"
    role = admin.post("/v1/pki/roles", json={"name": name("r"), "ca_id": pending["id"], "allowed_domains": ["x.io"],
                                             "allow_subdomains": True, "key_type": "ec"}).get_json()
    leaf = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "w.x.io"}).get_json()
    assert leaf["ca_chain"][-1] == root_pem
    assert openssl_verify(tmp_path, leaf["certificate"], leaf["ca_chain"], root_pem).returncode == 0


def test_import_of_an_existing_ca_certificate_and_key(admin, tmp_path):
    key = rsa.generate_private_key(65537, 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Legacy Root")])
    now = datetime.now(timezone.utc)
    from datetime import timedelta
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    other_key = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    mismatch = admin.post("/v1/pki/ca/import", json={"name": name("legacy"), "certificate": cert_pem,
                                                     "private_key": other_key})
    assert mismatch.status_code == 400
    made = admin.post("/v1/pki/ca/import", json={"name": name("legacy"), "certificate": cert_pem,
                                                 "private_key": key_pem})
    assert made.status_code == 201, made.get_json()
    ca = made.get_json()
    assert ca["origin"] == "imported" and ca["ca_type"] == "root" and "private_key" not in ca
    role = admin.post("/v1/pki/roles", json={"name": name("r"), "ca_id": ca["id"], "allowed_domains": ["legacy.lan"],
                                             "allow_subdomains": True}).get_json()
    leaf = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "a.legacy.lan"}).get_json()
    assert openssl_verify(tmp_path, leaf["certificate"], [], cert_pem).returncode == 0


def test_inventory_filters_and_cursor_pagination(admin):
    h = make_hierarchy(admin)
    role = h["role"]["name"]
    ids = [admin.post(f"/v1/pki/issue/{role}", json={"common_name": f"n{i}.internal", "ttl": f"{24 * (i + 1)}h"})
           .get_json()["id"] for i in range(5)]
    admin.post(f"/v1/pki/certificates/{ids[0]}/revoke", json={"reason": "superseded"})
    ca = h["intermediate"]["id"]
    seen, cursor = [], None
    while True:
        page = admin.get(f"/v1/pki/certificates?ca_id={ca}&limit=2" + (f"&cursor={cursor}" if cursor else "")).get_json()
        seen += [c["id"] for c in page["certificates"]]
        if not page["has_more"]:
            break
        cursor = page["cursor"]
    assert sorted(seen) == sorted(ids[1:])
    with_revoked = admin.get(f"/v1/pki/certificates?ca_id={ca}&include_revoked=true&limit=100").get_json()
    assert sorted(c["id"] for c in with_revoked["certificates"]) == sorted(ids)
    soon = admin.get(f"/v1/pki/certificates?ca_id={ca}&expiring_within=50h").get_json()["certificates"]
    assert [c["id"] for c in soon] == [ids[1]]
    assert error_code(admin.get("/v1/pki/certificates?cursor=%%%")) == "invalid_cursor"
    assert error_code(admin.get("/v1/pki/certificates?expiring_within=soon")) == "invalid_duration"
    pem = admin.get(f"/v1/pki/certificates/{ids[1]}/pem")
    assert pem.status_code == 200 and pem.data.startswith(b"-----BEGIN CERTIFICATE-----")
    assert error_code(admin.get("/v1/pki/certificates/cert_nope")) == "certificate_not_found"


def test_scopes_and_policies_govern_pki(callers, admin, tenant):
    h = make_hierarchy(admin)
    role = h["role"]["name"]
    no_scope = callers.user("plain@t.example", tenant, scopes=("secrets:read",))
    assert error_code(no_scope.post(f"/v1/pki/issue/{role}", json={"common_name": "a.internal"})) == "insufficient_scope"
    issuer = callers.user("issuer@t.example", tenant, scopes=("pki:issue", "secrets:read"))
    denied = issuer.post(f"/v1/pki/issue/{role}", json={"common_name": "a.internal"})
    assert denied.status_code == 403 and error_code(denied) == "access_denied"
    grant(admin, "user:issuer@t.example", [{"path_pattern": f"pki/issue/{role}", "permissions": ["write"]}])
    ok = issuer.post(f"/v1/pki/issue/{role}", json={"common_name": "a.internal"})
    assert ok.status_code == 201, ok.get_json()
    # a CA operation needs pki:admin
    assert error_code(issuer.post("/v1/pki/ca", json={"name": "x", "common_name": "x", "ca_type": "root"})) \
        == "insufficient_scope"
    # the issued certificate's secret is readable only with a grant on its path
    path = ok.get_json()["secret_path"]
    assert issuer.get(f"/v1/secrets/{path}").status_code == 403
    rows = db_rows(admin, tenant)
    assert {"pki_issue", "pki_ca_create", "pki_admin"} <= rows


def db_rows(admin, tenant):
    app = admin.client.application
    return {r["action"] for r in app.extensions["scaivault"].db.query(
        "SELECT DISTINCT action FROM audit_log WHERE tenant_id = :t", t=tenant)}


def test_bad_input_gets_envelopes_not_500(admin, anon):
    for body in ({"name": "Bad Name", "common_name": "x", "ca_type": "root"},
                 {"name": name("x"), "common_name": "x", "ca_type": "sub"},
                 {"name": name("x"), "common_name": "x", "ca_type": "root", "key_type": "dsa"},
                 {"name": name("x"), "common_name": "x", "ca_type": "root", "key_type": "rsa", "key_size": 1024},
                 {"name": "roles", "common_name": "x", "ca_type": "root"},
                 {"name": name("x"), "common_name": "x", "ca_type": "intermediate", "parent_ca_id": "ca_nope"}):
        resp = admin.post("/v1/pki/ca", json=body)
        assert resp.status_code in (400, 404, 422), (body, resp.status_code, resp.data[:200])
        assert "error" in resp.get_json()
    assert anon.get("/v1/pki/ca/ca_nope/crl").status_code == 404
    assert anon.get("/v1/pki/ca/ca_nope/certificate").get_json()["error"]["code"] == "ca_not_found"
    dup = name("dup")
    assert admin.post("/v1/pki/ca", json={"name": dup, "common_name": "x", "ca_type": "root", "key_type": "ec"}) \
        .status_code == 201
    assert error_code(admin.post("/v1/pki/ca", json={"name": dup, "common_name": "x", "ca_type": "root",
                                                     "key_type": "ec"})) == "conflict"


def test_auto_renew_at_two_thirds_writes_a_new_version_of_the_same_secret(app, admin, tenant):
    from scaivault.jobs import pki as pki_jobs

    h = make_hierarchy(admin, role={"store_private_keys": True})
    role = h["role"]["name"]
    refused = admin.post(f"/v1/pki/issue/{make_hierarchy(admin)['role']['name']}",
                         json={"common_name": "r.internal", "auto_renew": True})
    assert error_code(refused) == "certificate_not_allowed"
    first = admin.post(f"/v1/pki/issue/{role}", json={"common_name": "r.internal", "ttl": "3h", "auto_renew": True,
                                                      "secret_path": f"apps/{tenant}/tls"})
    assert first.status_code == 201, first.get_json()
    first = first.get_json()
    runtime = app.extensions["scaivault"]
    assert pki_jobs.renew_and_note_expiring(runtime)["renewed"] == 0     # not yet at two thirds
    db(app).execute("""UPDATE pki_certificates SET not_before = now() - interval '2 hours 1 minute',
                              not_after = now() + interval '59 minutes' WHERE id = :id""", id=first["id"])
    result = pki_jobs.renew_and_note_expiring(runtime)
    assert result["renewed"] == 1
    old = admin.get(f"/v1/pki/certificates/{first['id']}").get_json()
    assert old["renewed_by"] and not old["revoked"]
    new = admin.get(f"/v1/pki/certificates/{old['renewed_by']}").get_json()
    assert new["source"] == "renew" and new["secret_path"] == f"apps/{tenant}/tls" and new["auto_renew"]
    secret = admin.get(f"/v1/secrets/apps/{tenant}/tls").get_json()
    assert secret["version"] == 2 and secret["data"]["cert_pem"] == new["certificate"]
    key = serialization.load_pem_private_key(secret["data"]["key_pem"].encode(), None)
    assert key.public_key() == x509.load_pem_x509_certificate(new["certificate"].encode()).public_key()
    assert pki_jobs.renew_and_note_expiring(runtime)["renewed"] == 0     # renewed once only
    events = [r["extra_data"].get("event") for r in db(app).query(
        "SELECT extra_data FROM audit_log WHERE tenant_id = :t AND action = 'pki_issue'", t=tenant)]
    assert "certificate.renewed" in events and "certificate.issued" in events


def test_certificate_expiring_is_recorded_once(app, admin, tenant):
    from scaivault.jobs import pki as pki_jobs

    h = make_hierarchy(admin)
    cert = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "e.internal", "ttl": "24h"}).get_json()
    runtime = app.extensions["scaivault"]
    pki_jobs.note_expiring(runtime)
    pki_jobs.note_expiring(runtime)
    rows = db(app).query("""SELECT extra_data FROM audit_log WHERE tenant_id = :t
                             AND extra_data->>'event' = 'certificate.expiring'""", t=tenant)
    assert [r["extra_data"]["certificate_id"] for r in rows] == [cert["id"]]


def test_certificate_gauges_count_active_and_expiring_certificates(app, admin):
    from scaivault import metrics
    from scaivault.jobs import pki as pki_jobs

    h = make_hierarchy(admin)
    role = h["role"]["name"]
    for ttl in ("12h", "72h", "600h"):
        admin.post(f"/v1/pki/issue/{role}", json={"common_name": "g.internal", "ttl": ttl})
    gone = admin.post(f"/v1/pki/issue/{role}", json={"common_name": "g.internal"}).get_json()
    admin.post(f"/v1/pki/certificates/{gone['id']}/revoke", json={})
    pki_jobs.publish_certificate_gauges(app.extensions["scaivault"])
    assert metrics.CERTIFICATES_ACTIVE.labels(ca_id=h["intermediate"]["id"])._value.get() == 3
    assert metrics.CERTIFICATES_EXPIRING.labels(within_days="1")._value.get() >= 1


def test_a_refused_secret_write_leaves_no_certificate_behind(app, admin, tenant):
    h = make_hierarchy(admin)
    path = f"apps/{tenant}/occupied"
    assert admin.put(f"/v1/secrets/{path}", json={"data": {"x": "1"}}).status_code == 201
    assert admin.delete(f"/v1/secrets/{path}").status_code == 200        # soft-deleted, still restorable
    resp = admin.post(f"/v1/pki/issue/{h['role']['name']}", json={"common_name": "o.internal", "secret_path": path})
    assert resp.status_code == 409 and error_code(resp) == "secret_exists"
    assert db(app).scalar("SELECT count(*) FROM pki_certificates WHERE ca_id = :ca",
                          ca=h["intermediate"]["id"]) == 0


def test_a_large_crl_is_signed_off_the_gevent_loop(tmp_path):
    """Under gevent, building a 10,000-entry CRL leaves other greenlets running (invariant 12)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        from gevent import monkey; monkey.patch_all()
        import time, datetime, gevent
        from cryptography import x509
        from scaivault.pki import x509 as px
        from scaivault.pki.signer import LocalSigner
        key = LocalSigner(px.generate_key("ec", 256))
        now = datetime.datetime.now(datetime.timezone.utc)
        ca = px.ca_certificate("Load Root", key.public_key(), px.Issuer(None, key), now, now + datetime.timedelta(days=1))
        entries = [px.revoked_entry(px.Revoked(format(x509.random_serial_number(), "x"), now, "superseded"))
                   for _ in range(10000)]
        gaps, last, done = [], [time.perf_counter()], [False]
        def tick():
            while not done[0]:
                gevent.sleep(0.005)
                t = time.perf_counter(); gaps.append(t - last[0]); last[0] = t
        ticker = gevent.spawn(tick)
        gevent.sleep(0.02)
        started = time.perf_counter()
        der = px.off_the_event_loop(px.build_crl, px.Issuer(ca, key), entries, 1, now, now + datetime.timedelta(hours=1))
        took = time.perf_counter() - started
        done[0] = True; ticker.join()
        assert len(x509.load_der_x509_crl(der)) == 10000
        print(took, max(gaps))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    took, worst_gap = map(float, out.stdout.split())
    assert worst_gap < took * 0.6, (took, worst_gap)
