"""X.509 building blocks over `cryptography`: keys, CA and leaf certificates, CSRs, CRLs.

Pure functions without database or HTTP; scaivault.services.pki decides what to build.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .signer import LocalSigner, Signer

KEY_SIZES = {"rsa": (2048, 3072, 4096), "ec": (256, 384)}
DEFAULT_KEY_SIZE = {"rsa": 2048, "ec": 256}
_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1}
_CURVE_SIZES = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 521}
BACKDATE = timedelta(seconds=30)     # tolerate small clock skew at relying parties

# RFC 5280 CRLReason names accepted by the API (removeFromCRL is for delta CRLs only)
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "certificate_hold": x509.ReasonFlags.certificate_hold,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aa_compromise": x509.ReasonFlags.aa_compromise,
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class X509Problem(ValueError):
    """Input that cannot be turned into what was asked (bad PEM, unsupported key, ...)."""


def generate_key(key_type: str, key_size: int) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return ec.generate_private_key(_CURVES[key_size]())


def key_shape(key) -> tuple[str, int]:
    """("rsa", bits) or ("ec", curve bits) of a public or private key; X509Problem otherwise."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa", key.key_size
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        size = _CURVE_SIZES.get(key.curve.name)
        if size is None:
            raise X509Problem(f"unsupported curve {key.curve.name}")
        return "ec", size
    raise X509Problem("only RSA and EC keys are supported")


def private_key_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_private_key(pem: str | bytes, *, sealed: bool = False) -> PrivateKey:
    """A PEM private key. `sealed`: opened from ScaiVault's own sealed column (validated when it was
    generated or imported, integrity-protected since by the AEAD), so OpenSSL's RSA consistency
    check, about 100 ms per RSA key on this hardware, is not repeated on every signature."""
    try:
        key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None,
                                                 unsafe_skip_rsa_key_validation=sealed)
    except (ValueError, TypeError):
        raise X509Problem("not an unencrypted PEM private key") from None
    key_shape(key)
    return key  # type: ignore[return-value]


def load_certificate(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise X509Problem("not a PEM certificate") from None


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise X509Problem("not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise X509Problem("the CSR signature does not verify")
    return csr


def split_pems(text: str) -> list[str]:
    """The PEM certificates of a concatenated bundle, each normalised to end in a newline."""
    marker = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + marker + "\n" for part in text.split(marker) if part.strip()]


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_der(cert_pem_text: str) -> bytes:
    return load_certificate(cert_pem_text).public_bytes(serialization.Encoding.DER)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _distribution(builder: x509.CertificateBuilder, crl_url: str | None, issuer_url: str | None):
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)], relative_name=None, reasons=None,
            crl_issuer=None)]), critical=False)
    if issuer_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(issuer_url))]),
            critical=False)
    return builder


@dataclass(frozen=True)
class Issuer:
    """What signs: the issuing CA's certificate (None for a self-signed root) and its Signer
    (scaivault.pki.signer: a sealed key opened in memory, or a key inside the HSM)."""

    certificate: x509.Certificate | None
    signer: Signer
    crl_url: str | None = None
    issuer_url: str | None = None


def ca_certificate(common_name: str, public_key, issuer: Issuer, not_before: datetime,
                   not_after: datetime) -> x509.Certificate:
    """A CA certificate: self-signed when issuer.certificate is None, else signed by the issuer."""
    subject = _name(common_name)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.certificate.subject if issuer.certificate else subject)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before - BACKDATE)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    signer_public = issuer.signer.public_key()
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_public), critical=False)
    if issuer.certificate is not None:
        builder = _distribution(builder, issuer.crl_url, issuer.issuer_url)
    return issuer.signer.certificate(builder)


def ca_csr(common_name: str, signer: Signer) -> x509.CertificateSigningRequest:
    """The CSR of an intermediate whose certificate an outside root will sign (for the signer's key)."""
    return signer.csr(x509.CertificateSigningRequestBuilder()
                      .subject_name(_name(common_name))
                      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def leaf_certificate(*, common_name: str | None, dns_names: Iterable[str], ip_sans: Iterable[str], public_key,
                     issuer: Issuer, not_before: datetime, not_after: datetime, server: bool,
                     client: bool) -> x509.Certificate:
    """An end-entity certificate with SANs, key usage, EKU, CRL distribution point and AIA."""
    assert issuer.certificate is not None
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name) if common_name else x509.Name([]))
               .issuer_name(issuer.certificate.subject)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before - BACKDATE)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=is_rsa, data_encipherment=False,
                                            key_agreement=not is_rsa, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.signer.public_key()),
                              critical=False))
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        # with an empty subject the SAN extension must be critical (RFC 5280 4.2.1.6)
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not common_name)
    builder = _distribution(builder, issuer.crl_url, issuer.issuer_url)
    return issuer.signer.certificate(builder)


@dataclass(frozen=True)
class Revoked:
    serial_number: str          # hex
    revoked_at: datetime
    reason: str | None


def revoked_entry(item: Revoked) -> x509.RevokedCertificate:
    entry = (x509.RevokedCertificateBuilder()
             .serial_number(int(item.serial_number, 16))
             .revocation_date(item.revoked_at))
    flag = REASONS.get(item.reason or "")
    if flag is not None and flag is not x509.ReasonFlags.unspecified:
        entry = entry.add_extension(x509.CRLReason(flag), critical=False)
    return entry.build()


def build_crl(issuer: Issuer, revoked: Iterable[x509.RevokedCertificate], number: int, this_update: datetime,
              next_update: datetime) -> bytes:
    """A signed CRL (DER) listing `revoked` entries, with CRL number and authority key identifier."""
    assert issuer.certificate is not None
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.certificate.subject)
               .last_update(this_update)
               .next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.signer.public_key()),
                              critical=False))
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return issuer.signer.crl(builder).public_bytes(serialization.Encoding.DER)


def off_the_event_loop(fn, *args):
    """Run CPU-bound work (RSA key generation, CRL signing) in a native thread under gevent, else here.

    Under gevent every greenlet of a worker shares one thread: a 10,000-entry CRL built in a
    greenlet would stall the worker's other requests for its whole duration (invariant 12). In a
    native thread the interpreter's switch interval lets the hub keep serving meanwhile.
    """
    try:
        from gevent import monkey
    except ImportError:
        return fn(*args)
    if not monkey.is_module_patched("threading"):
        return fn(*args)
    import gevent

    return gevent.get_hub().threadpool.apply(fn, args)


def crl_pem(der: bytes) -> str:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM).decode()


def names_in_csr(csr: x509.CertificateSigningRequest) -> tuple[str | None, list[str], list[str]]:
    """(common name, DNS SANs, IP SANs) requested by a CSR."""
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(cns[0].value) if cns else None
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return common_name, [], []
    return (common_name, list(ext.get_values_for_type(x509.DNSName)),
            [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)])
