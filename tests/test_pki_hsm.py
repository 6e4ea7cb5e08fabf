"""CAs whose keys live in the HSM (`key_storage: hsm`, KMS_PROVIDER=pkcs11) on a real SoftHSM2 token."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from scaivault.config import DatabaseURL
from scaivault.migrate import MigrationRunner
from scaivault.pki import signer as ps
from scaivault.pki import x509 as px
from tests.hsm_support import pkcs11_env, softhsm_token, write_pin_file
from tests.pki_support import crl_listing, name, openssl_verify, pki_admin
from tests.secrets_support import HIGH_RATE_LIMITS, Callers, error_code, new_tenant

BASE = "http://127.0.0.1:8443"


@pytest.fixture(scope="module")
def hsm_env(databases, tmp_path_factory) -> dict:
    """KMS_PROVIDER=pkcs11 on the test token, with its own database (the session database's
    encryption root belongs to the local provider); None = variable removed."""
    softhsm_token()
    url = databases.create()
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    pin = write_pin_file(tmp_path_factory.mktemp("hsm-pin"))
    return {**pkcs11_env(pin), "DATABASE_URL": url, "BASE_URL": BASE}


@pytest.fixture(scope="module")
def hsm_app(make_app, hsm_env):
    app = make_app(RATE_LIMITS=HIGH_RATE_LIMITS, **{k: v for k, v in hsm_env.items() if v is not None})
    assert app.extensions["scaivault"].settings.kms_provider == "pkcs11"
    return app


@pytest.fixture
def admin(hsm_app, scaikey):
    return pki_admin(Callers(scaikey, hsm_app.test_client()), new_tenant())


@pytest.fixture
def anon(hsm_app):
    return hsm_app.test_client()


def _db(app):
    return app.extensions["scaivault"].db


def _hsm_keys(app):
    return app.extensions["scaivault"].pki._hsm_keys()


def _ca(admin, *, ca_type="root", parent=None, key_type="ec", key_size=256, ttl="87600h", storage="hsm"):
    body = {"name": name(ca_type[:5]), "common_name": f"HSM {ca_type} {key_type}{key_size}", "ca_type": ca_type,
            "key_type": key_type, "key_size": key_size, "ttl": ttl, "key_storage": storage}
    if parent:
        body["parent_ca_id"] = parent
    resp = admin.post("/v1/pki/ca", json=body)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _hierarchy(admin, key_type, key_size, role: dict | None = None):
    root = _ca(admin, key_type=key_type, key_size=key_size)
    inter = _ca(admin, ca_type="intermediate", parent=root["id"], key_type=key_type, key_size=key_size, ttl="43800h")
    made = admin.post("/v1/pki/roles", json={"name": name("svc"), "ca_id": inter["id"],
                                            "allowed_domains": ["*.svc.cluster.local"], "max_ttl": "720h",
                                            **(role or {})})
    assert made.status_code == 201, made.get_json()
    return root, inter, made.get_json()


def _verify_with(public_key, signature: bytes, data: bytes, hash_algorithm) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    else:
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))


# ----------------------------------------------------------------- issue 12 done-when, HSM edition
@pytest.mark.parametrize("key_type,key_size", [("rsa", 2048), ("ec", 256)])
def test_hsm_root_and_intermediate_issue_a_leaf_that_openssl_verify_accepts(admin, anon, tmp_path, key_type, key_size):
    root, inter, role = _hierarchy(admin, key_type, key_size)
    for ca in (root, inter):
        assert ca["key_storage"] == "hsm" and ca["hsm_key_label"] == f"scaivault-ca:{ca['id']}"
        assert len(ca["hsm_key_id"]) == 32 and ca["is_active"]
    resp = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "billing.svc.cluster.local",
                                                              "ttl": "168h"})
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    root_pem = anon.get(f"/v1/pki/ca/{root['id']}/certificate").data.decode()
    result = openssl_verify(tmp_path, doc["certificate"], doc["ca_chain"], root_pem)
    assert result.returncode == 0, result.stdout + result.stderr
    # the signatures are the HSM keys': the intermediate's key signed the leaf, the root's the intermediate
    leaf = x509.load_pem_x509_certificate(doc["certificate"].encode())
    inter_cert = x509.load_pem_x509_certificate(inter["certificate_pem"].encode())
    root_cert = x509.load_pem_x509_certificate(root_pem.encode())
    leaf.verify_directly_issued_by(inter_cert)
    inter_cert.verify_directly_issued_by(root_cert)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    ski = inter_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert aki == ski
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"{BASE}/v1/pki/ca/{inter['id']}/crl"


def test_the_ca_public_keys_are_the_hsm_keys(hsm_app, admin):
    root = _ca(admin, key_type="ec", key_size=384)
    inter = _ca(admin, ca_type="intermediate", parent=root["id"], key_type="rsa", key_size=2048, ttl="1000h")
    for ca in (root, inter):
        handle = _hsm_keys(hsm_app).key(bytes.fromhex(ca["hsm_key_id"]))
        token_public = ps.public_key_from_numbers(handle.key_type, handle.public_numbers)
        cert = x509.load_pem_x509_certificate(ca["certificate_pem"].encode())
        assert cert.public_key() == token_public
    # an RSA intermediate under a P-384 root: the root's ECDSA-SHA384 signature over it
    inter_cert = x509.load_pem_x509_certificate(inter["certificate_pem"].encode())
    assert inter_cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA384
    root_cert = x509.load_pem_x509_certificate(root["certificate_pem"].encode())
    _verify_with(root_cert.public_key(), inter_cert.signature, inter_cert.tbs_certificate_bytes, hashes.SHA384())


def test_rsa_4096_hsm_root_verifies_with_openssl(admin, anon, tmp_path):
    root = _ca(admin, key_type="rsa", key_size=4096, ttl="1000h")
    der = anon.get(f"/v1/pki/ca/{root['id']}/certificate", headers={"Accept": "application/pkix-cert"}).data
    cert = x509.load_der_x509_certificate(der)
    assert cert.public_key().key_size == 4096
    assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSA_WITH_SHA256
    (tmp_path / "root.pem").write_text(root["certificate_pem"])
    import subprocess

    out = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "root.pem")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_revoked_serial_is_in_the_anonymous_crl_signed_by_the_hsm_key(admin, anon, tmp_path):
    root, inter, role = _hierarchy(admin, "ec", 256)
    doc = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "gone.svc.cluster.local"}).get_json()
    revoked = admin.post(f"/v1/pki/certificates/{doc['id']}/revoke", json={"reason": "key_compromise"})
    assert revoked.status_code == 200, revoked.get_json()
    crl = crl_listing(anon, inter["id"], doc["serial_number"])
    entry = crl.get_revoked_certificate_by_serial_number(int(doc["serial_number"], 16))
    assert entry is not None
    inter_public = x509.load_pem_x509_certificate(inter["certificate_pem"].encode()).public_key()
    assert crl.is_signature_valid(inter_public)
    _verify_with(inter_public, crl.signature, crl.tbs_certlist_bytes, hashes.SHA256())
    crl_pems = [anon.get(f"/v1/pki/ca/{ca_id}/crl?format=pem").data.decode() for ca_id in (inter["id"], root["id"])]
    result = openssl_verify(tmp_path, doc["certificate"], doc["ca_chain"], root["certificate_pem"], crl_pems=crl_pems)
    assert result.returncode != 0 and "revoked" in (result.stdout + result.stderr)
    # regenerate-now signs through the HSM too
    now = admin.post(f"/v1/pki/ca/{inter['id']}/crl")
    assert now.status_code == 200, now.get_json()
    fresh = x509.load_pem_x509_crl(now.get_json()["crl"].encode())
    assert fresh.is_signature_valid(inter_public) and len(fresh) == 1


def test_the_hsm_private_key_is_not_extractable_and_not_in_the_database(hsm_app, admin):
    import PyKCS11

    ca = _ca(admin, key_type="rsa", key_size=2048, ttl="1000h")
    ec_ca = _ca(admin, key_type="ec", key_size=256, ttl="1000h")
    keys = _hsm_keys(hsm_app)
    for made, secret_attribute in ((ca, PyKCS11.CKA_PRIVATE_EXPONENT), (ec_ca, PyKCS11.CKA_VALUE)):
        key_id = bytes.fromhex(made["hsm_key_id"])
        flags = keys.attributes(key_id, ("CKA_SENSITIVE", "CKA_EXTRACTABLE", "CKA_NEVER_EXTRACTABLE", "CKA_TOKEN"))
        assert flags == {"CKA_SENSITIVE": True, "CKA_EXTRACTABLE": False, "CKA_NEVER_EXTRACTABLE": True,
                         "CKA_TOKEN": True}
        def read_secret_half(session):
            template = PyKCS11.LowLevel.ckattrlist(1)
            template[0].SetType(secret_attribute)
            rv = session.lib.C_GetAttributeValue(session.session, keys.private_handle(session, key_id), template)
            return rv, session.getAttributeValue(keys.private_handle(session, key_id), [secret_attribute])

        rv, values = keys.run(read_secret_half)
        assert PyKCS11.CKR[rv] == "CKR_ATTRIBUTE_SENSITIVE" and values == [None]
        # the label on the token is the one recorded on the CA row
        labels = keys.run(lambda session: [session.getAttributeValue(o, [PyKCS11.CKA_LABEL])[0] for o in
                                           session.findObjects([(PyKCS11.CKA_ID, key_id)])])
        assert labels == [made["hsm_key_label"]] * 2            # private and public half
        row = _db(hsm_app).one("SELECT * FROM pki_cas WHERE id = :id", id=made["id"])
        assert row["sealed_key"] is None and row["key_storage"] == "hsm" and row["hsm_key_id"] == made["hsm_key_id"]
        assert not any("PRIVATE KEY" in str(value) for value in row.values())
    got = admin.get(f"/v1/pki/ca/{ca['id']}").get_json()
    assert "sealed_key" not in got and not any("PRIVATE" in str(v) for v in got.values())
    # the database's constraint: an hsm CA never carries a sealed key
    with pytest.raises(Exception) as info:
        _db(hsm_app).execute("UPDATE pki_cas SET sealed_key = 'x' WHERE id = :id", id=ca["id"])
    assert "pki_cas_key_storage" in str(info.value)


def test_sealed_and_hsm_cas_side_by_side(hsm_app, admin, anon, tmp_path):
    """A sealed root signs an HSM intermediate; the sealed key is still sealed by the HSM-backed keyring."""
    root = _ca(admin, key_type="ec", key_size=256, storage="sealed")
    assert root["key_storage"] == "sealed" and "hsm_key_id" not in root
    inter = _ca(admin, ca_type="intermediate", parent=root["id"], key_type="ec", key_size=384, ttl="1000h")
    made = admin.post("/v1/pki/roles", json={"name": name("mix"), "ca_id": inter["id"], "allowed_domains": ["*.internal"],
                                             "key_type": "ec", "key_bits": 256})
    assert made.status_code == 201, made.get_json()
    doc = admin.post(f"/v1/pki/issue/{made.get_json()['name']}", json={"common_name": "a.internal"}).get_json()
    result = openssl_verify(tmp_path, doc["certificate"], doc["ca_chain"], root["certificate_pem"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert bytes(_db(hsm_app).scalar("SELECT sealed_key FROM pki_cas WHERE id = :id", id=root["id"]))[:2] == b"SV"


def test_revoking_an_hsm_root_cascades_and_its_crl_is_still_signed(admin, anon):
    root, inter, role = _hierarchy(admin, "ec", 256)
    leaf = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "x.svc.cluster.local"}).get_json()
    resp = admin.post(f"/v1/pki/ca/{root['id']}/revoke", json={"reason": "key_compromise"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["cas_revoked"] == 2
    refused = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "y.svc.cluster.local"})
    assert refused.status_code == 409 and error_code(refused) == "ca_revoked"
    assert admin.get(f"/v1/pki/certificates/{leaf['id']}").get_json()["revoked"]
    # the revoked root keeps publishing a CRL, signed in the HSM, listing the intermediate
    root_public = x509.load_pem_x509_certificate(root["certificate_pem"].encode()).public_key()
    crl = crl_listing(anon, root["id"], inter["serial_number"])
    assert crl.get_revoked_certificate_by_serial_number(int(inter["serial_number"], 16)) is not None
    assert crl.is_signature_valid(root_public)
    inter_crl = crl_listing(anon, inter["id"], leaf["serial_number"])
    assert inter_crl.get_revoked_certificate_by_serial_number(int(leaf["serial_number"], 16)) is not None


def test_an_hsm_intermediate_signed_by_an_outside_root(admin, anon, tmp_path):
    pending = _ca(admin, ca_type="intermediate", key_type="rsa", key_size=2048, ttl="1000h")
    assert pending["status"] == "pending"
    csr = x509.load_pem_x509_csr(pending["csr"].encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pending["common_name"]
    outside_key = ec.generate_private_key(ec.SECP256R1())
    outside_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Outside Root")])
    now = datetime.datetime.now(datetime.timezone.utc)
    outside = (x509.CertificateBuilder().subject_name(outside_name).issuer_name(outside_name)
               .public_key(outside_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=90))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(outside_key, hashes.SHA256()))
    signed = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(outside_name)
              .public_key(csr.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
              .sign(outside_key, hashes.SHA256()))
    outside_pem = outside.public_bytes(serialization.Encoding.PEM).decode()
    installed = admin.post(f"/v1/pki/ca/{pending['id']}/certificate",
                           json={"certificate": signed.public_bytes(serialization.Encoding.PEM).decode(),
                                 "ca_chain": [outside_pem]})
    assert installed.status_code == 200, installed.get_json()
    made = admin.post("/v1/pki/roles", json={"name": name("out"), "ca_id": pending["id"],
                                             "allowed_domains": ["*.internal"], "max_ttl": "72h"})
    assert made.status_code == 201, made.get_json()
    doc = admin.post(f"/v1/pki/issue/{made.get_json()['name']}", json={"common_name": "z.internal"}).get_json()
    result = openssl_verify(tmp_path, doc["certificate"], doc["ca_chain"][:1], outside_pem)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_dropped_hsm_session_is_reopened_for_signing(hsm_app, admin):
    root, inter, role = _hierarchy(admin, "rsa", 2048)
    _hsm_keys(hsm_app).token.session.closeSession()                    # as after an HSM restart
    resp = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "again.svc.cluster.local"})
    assert resp.status_code == 201, resp.get_json()
    leaf = x509.load_pem_x509_certificate(resp.get_json()["certificate"].encode())
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(inter["certificate_pem"].encode()))


def test_a_ca_whose_hsm_key_is_gone_fails_closed(hsm_app, admin, anon):
    root, inter, role = _hierarchy(admin, "ec", 256)
    assert admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "a.svc.cluster.local"}).status_code == 201
    crl_before = anon.get(f"/v1/pki/ca/{inter['id']}/crl").data
    _hsm_keys(hsm_app).destroy(bytes.fromhex(inter["hsm_key_id"]))     # an operator removed it from the token
    resp = admin.post(f"/v1/pki/issue/{role['name']}", json={"common_name": "b.svc.cluster.local"})
    assert resp.status_code == 503 and error_code(resp) == "kms_error", resp.get_json()
    assert "PRIVATE" not in resp.get_data(as_text=True)
    # nothing was issued or stored; relying parties still get the last CRL
    listed = admin.get(f"/v1/pki/certificates?ca_id={inter['id']}").get_json()["certificates"]
    assert [c["common_name"] for c in listed] == ["a.svc.cluster.local"]
    assert anon.get(f"/v1/pki/ca/{inter['id']}/crl").data == crl_before


def test_bad_key_storage_is_refused(admin):
    resp = admin.post("/v1/pki/ca", json={"name": name("bad"), "common_name": "Bad", "ca_type": "root",
                                          "key_storage": "tpm"})
    assert resp.status_code == 422 and error_code(resp) == "validation_error"


# ----------------------------------------------------------------- forked workers
def test_a_forked_worker_signs_with_its_own_hsm_session(hsm_app, admin):
    """gunicorn forks workers: a worker's provider opens its own session and finds the CA key by CKA_ID."""
    import os

    from tests.fakes import kms_conformance

    ca = _ca(admin, key_type="ec", key_size=256, ttl="1000h")
    ca_public = x509.load_pem_x509_certificate(ca["certificate_pem"].encode()).public_key()
    settings = hsm_app.extensions["scaivault"].settings
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                            # the worker
        try:
            signer = ps.HsmSigner(kms_conformance.provider(settings).signing_keys().key(bytes.fromhex(ca["hsm_key_id"])))
            csr = px.ca_csr("Forked", signer)
            os.write(write, b"ok" if csr.is_signature_valid and csr.public_key() == ca_public else b"bad")
        except BaseException as exc:                        # report, never raise into pytest's copy
            os.write(write, repr(exc).encode()[:300])
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 400) == b"ok"
    os.close(read)
    # the parent's session still signs
    assert admin.post(f"/v1/pki/ca/{ca['id']}/crl").status_code == 200


@pytest.mark.drill_long
def test_forked_gevent_workers_sign_with_the_hsm(hsm_app, hsm_env, base_env, scaikey, tmp_path):
    """`scaivault serve` (gunicorn, gevent, two forked workers): each worker opens its own HSM
    session; issuing and the background CRL re-sign (native thread) go through the token.
    Long only because the server's graceful stop takes its 30 s (the short version is above)."""
    import time

    import requests

    from tests.foundation_support import ServedInstance, get_ready
    from tests.pki_support import PKI_SCOPES

    env = {**base_env, **hsm_env, "WEB_CONCURRENCY": "2", "RATE_LIMITS": HIGH_RATE_LIMITS}
    env = {k: v for k, v in env.items() if v is not None}
    tenant = new_tenant()
    token = scaikey.mint(sub="usr_hsmserve", email=f"hsm@{tenant}.example", tenant_id=tenant, partner_id="ptn_test",
                         scopes=PKI_SCOPES, role="tenant_admin", groups=())
    auth = {"Authorization": f"Bearer {token}"}
    with ServedInstance(env) as instance:
        assert get_ready(instance.url).status_code == 200

        def post(path, body):
            resp = requests.post(instance.url + path, json=body, headers=auth, timeout=60)
            assert resp.status_code in (200, 201), resp.text
            return resp.json()

        root = post("/v1/pki/ca", {"name": name("sroot"), "common_name": "Served HSM Root", "ca_type": "root",
                                   "key_type": "ec", "key_size": 256, "key_storage": "hsm"})
        inter = post("/v1/pki/ca", {"name": name("sint"), "common_name": "Served HSM Intermediate",
                                    "ca_type": "intermediate", "parent_ca_id": root["id"], "key_type": "rsa",
                                    "key_size": 2048, "ttl": "1000h", "key_storage": "hsm"})
        role = post("/v1/pki/roles", {"name": name("srole"), "ca_id": inter["id"], "allowed_domains": ["*.internal"]})
        leaves = [post(f"/v1/pki/issue/{role['name']}", {"common_name": f"s{i}.internal"}) for i in range(6)]
        for i, leaf in enumerate(leaves):
            result = openssl_verify(tmp_path / str(i), leaf["certificate"], leaf["ca_chain"], root["certificate_pem"])
            assert result.returncode == 0, result.stdout + result.stderr
        post(f"/v1/pki/certificates/{leaves[0]['id']}/revoke", {"reason": "superseded"})
        inter_public = x509.load_pem_x509_certificate(inter["certificate_pem"].encode()).public_key()
        serial = int(leaves[0]["serial_number"], 16)
        deadline = time.monotonic() + 20
        while True:
            crl = x509.load_der_x509_crl(requests.get(f"{instance.url}/v1/pki/ca/{inter['id']}/crl", timeout=30).content)
            if crl.get_revoked_certificate_by_serial_number(serial) is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert crl.get_revoked_certificate_by_serial_number(serial) is not None
        assert crl.is_signature_valid(inter_public)
        assert instance.stop() == 0
    assert "Traceback" not in instance.stderr, instance.stderr[-3000:]


# ----------------------------------------------------------------- without the HSM
@pytest.fixture
def local_app(make_app):
    return make_app(RATE_LIMITS=HIGH_RATE_LIMITS, BASE_URL=BASE)


def test_key_storage_hsm_is_refused_unless_the_kms_is_pkcs11(local_app, scaikey):
    assert local_app.extensions["scaivault"].settings.kms_provider == "local"
    admin = pki_admin(Callers(scaikey, local_app.test_client()), new_tenant())
    ca_name = name("nohsm")
    resp = admin.post("/v1/pki/ca", json={"name": ca_name, "common_name": "No HSM", "ca_type": "root",
                                          "key_storage": "hsm"})
    assert resp.status_code == 400 and error_code(resp) == "hsm_not_configured", resp.get_json()
    assert "KMS_PROVIDER=pkcs11" in resp.get_json()["error"]["message"]
    assert resp.get_json()["error"]["details"] == {"field": "key_storage", "kms_provider": "local"}
    assert _db(local_app).scalar("SELECT count(*) FROM pki_cas WHERE name = :n", n=ca_name) == 0
    sealed = admin.post("/v1/pki/ca", json={"name": ca_name, "common_name": "Sealed", "ca_type": "root"})
    assert sealed.status_code == 201 and sealed.get_json()["key_storage"] == "sealed"


# ----------------------------------------------------------------- the signer itself
def test_der_lengths_are_minimal():
    assert ps.der_length(0) == b"\x00" and ps.der_length(127) == b"\x7f"
    assert ps.der_length(128) == b"\x81\x80" and ps.der_length(255) == b"\x81\xff"
    assert ps.der_length(256) == b"\x82\x01\x00" and ps.der_length(65536) == b"\x83\x01\x00\x00"
    long = ps.der_tlv(0x04, b"a" * 300)
    assert ps.der_elements(ps.der_tlv(0x30, long + ps.der_tlv(0x05, b""))) == [long, b"\x05\x00"]


class _SoftwareHandle:
    """A stand-in for the token's key handle, signing in software the way the HSM mechanisms do."""

    def __init__(self, key, lie: bool = False):
        self.key = key
        self.lie = lie
        pub = key.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            self.key_type = "rsa"
            self.public_numbers = (pub.public_numbers().n, pub.public_numbers().e)
        else:
            self.key_type = "ec"
            point = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            self.public_numbers = (pub.curve.key_size, ps.der_tlv(0x04, point))

    def sign(self, mechanism: str, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

        if mechanism.endswith("RSA_PKCS"):
            algorithm = hashes.SHA384() if "SHA384" in mechanism else hashes.SHA256()
            return self.key.sign(data + (b"x" if self.lie else b""), padding.PKCS1v15(), algorithm)
        assert mechanism == "CKM_ECDSA"                       # over the digest, r||s out
        digest = data[::-1] if self.lie else data
        prehash = hashes.SHA384() if len(data) == 48 else hashes.SHA256()
        r, s = decode_dss_signature(self.key.sign(digest, ec.ECDSA(Prehashed(prehash))))
        size = (self.key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.mark.parametrize("make_key", [lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                      lambda: ec.generate_private_key(ec.SECP384R1())])
def test_a_signature_that_does_not_verify_is_never_returned(make_key):
    key = make_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    honest = ps.HsmSigner(_SoftwareHandle(key))
    cert = px.ca_certificate("Signer Root", honest.public_key(), px.Issuer(None, honest), now,
                             now + datetime.timedelta(days=1))
    cert.verify_directly_issued_by(cert)
    crl = x509.load_der_x509_crl(px.build_crl(px.Issuer(cert, honest), [], 1, now, now + datetime.timedelta(hours=1)))
    assert crl.is_signature_valid(key.public_key())
    csr = px.ca_csr("Signer CSR", honest)
    assert csr.is_signature_valid and csr.public_key() == key.public_key()
    liar = ps.HsmSigner(_SoftwareHandle(key, lie=True))
    for attempt in (lambda: px.ca_certificate("Liar", liar.public_key(), px.Issuer(None, liar), now,
                                              now + datetime.timedelta(days=1)),
                    lambda: px.build_crl(px.Issuer(cert, liar), [], 2, now, now + datetime.timedelta(hours=1)),
                    lambda: px.ca_csr("Liar", liar)):
        with pytest.raises(ps.HsmSignatureError):
            attempt()
