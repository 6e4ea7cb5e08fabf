"""Who signs for a CA: a sealed key opened in memory, or a key that never leaves the HSM.

Every place the PKI signs (CA certificates, leaves, CRLs, CSRs for outside roots) builds the
object with cryptography's builders and hands the builder to a Signer, so both kinds of CA
share one code path and the extensions stay in scaivault.pki.x509.

`cryptography` signs only with its own key objects. For an HSM key the builder is signed once
with a throwaway key of the same algorithm (the TBS carries the signature AlgorithmIdentifier,
which depends only on algorithm and hash), the TBS bytes are signed inside the HSM, and the
DER SEQUENCE {tbs, signatureAlgorithm, BIT STRING} is assembled here. The result is loaded
with cryptography and its signature verified with the HSM's public key before it is returned
(fail closed). A CSR's CertificationRequestInfo also carries the subject public key, so the
throwaway key's SubjectPublicKeyInfo is swapped for the HSM key's first.
"""
from __future__ import annotations

import threading
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..crypto.errors import KmsError

_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1}


class HsmSignatureError(KmsError):
    """The HSM's signature did not verify, or the assembled object did not round-trip (503 kms_error:
    nothing is returned or stored)."""


def signature_hash(public_key) -> hashes.HashAlgorithm:
    """SHA-384 for P-384 keys, SHA-256 otherwise (RSA 2048/4096, P-256)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


class Signer(Protocol):
    """What signs for a CA; builders in, signed cryptography objects out."""

    storage: str

    def public_key(self): ...

    def certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate: ...

    def crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList: ...

    def csr(self, builder: x509.CertificateSigningRequestBuilder) -> x509.CertificateSigningRequest: ...


class LocalSigner:
    """A CA key held in memory (opened from its sealed form, or just generated)."""

    storage = "sealed"

    def __init__(self, key):
        self.key = key
        self.hash = signature_hash(key.public_key())

    def public_key(self):
        return self.key.public_key()

    def certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self.key, self.hash)

    def crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        return builder.sign(self.key, self.hash)

    def csr(self, builder: x509.CertificateSigningRequestBuilder) -> x509.CertificateSigningRequest:
        return builder.sign(self.key, self.hash)


# ---------------------------------------------------------------------- minimal DER
def der_length(n: int) -> bytes:
    """DER definite length: short form below 128, else 0x80|count then big-endian bytes."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_elements(data: bytes, tag: int = 0x30) -> list[bytes]:
    """The complete TLVs inside one constructed TLV `data` (whose tag must be `tag`); strict DER lengths."""
    content = _content(data, tag)
    out, offset = [], 0
    while offset < len(content):
        end = _tlv_end(content, offset)
        out.append(content[offset:end])
        offset = end
    return out


def _content(data: bytes, tag: int) -> bytes:
    if not data or data[0] != tag:
        raise HsmSignatureError(f"DER: expected tag 0x{tag:02x}")
    start, length = _header(data, 0)
    if start + length != len(data):
        raise HsmSignatureError("DER: trailing or missing bytes")
    return data[start:start + length]


def _header(data: bytes, offset: int) -> tuple[int, int]:
    """(content offset, content length) of the TLV at `offset` (single-byte tags only)."""
    if offset + 2 > len(data):
        raise HsmSignatureError("DER: truncated")
    first = data[offset + 1]
    if first < 0x80:
        return offset + 2, first
    count = first & 0x7F
    if count == 0 or count > 4 or offset + 2 + count > len(data):
        raise HsmSignatureError("DER: unsupported length")
    return offset + 2 + count, int.from_bytes(data[offset + 2:offset + 2 + count], "big")


def _tlv_end(data: bytes, offset: int) -> int:
    start, length = _header(data, offset)
    if start + length > len(data):
        raise HsmSignatureError("DER: truncated")
    return start + length


def signed_der(tbs: bytes, signature_algorithm: bytes, signature: bytes) -> bytes:
    """SEQUENCE { tbs, signatureAlgorithm, BIT STRING (no unused bits) signature }."""
    return der_tlv(0x30, tbs + signature_algorithm + der_tlv(0x03, b"\x00" + signature))


# ---------------------------------------------------------------------- HSM signer
_THROWAWAY: dict[str, object] = {}
_THROWAWAY_LOCK = threading.Lock()


def _throwaway(key_type: str):
    """A per-process key of the algorithm, only ever used to get a TBS out of a builder."""
    with _THROWAWAY_LOCK:
        key = _THROWAWAY.get(key_type)
        if key is None:
            key = _THROWAWAY[key_type] = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                                          if key_type == "rsa" else ec.generate_private_key(ec.SECP256R1()))
        return key


def public_key_from_numbers(key_type: str, numbers) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The cryptography public key of an HSM key: (modulus, exponent) or (curve bits, CKA_EC_POINT)."""
    if key_type == "rsa":
        modulus, exponent = numbers
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    bits, point = numbers
    if len(point) != 1 + 2 * ((bits + 7) // 8):
        point = _content(point, 0x04)           # CKA_EC_POINT as a DER OCTET STRING (PKCS#11 2.40)
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[bits](), point)


class HsmSigner:
    """A CA key inside the HSM: TBS from the builder, signature from the token, DER assembled here."""

    storage = "hsm"

    def __init__(self, handle):
        """`handle`: plugins.kms_pkcs11.HsmKeyHandle (key_type, public_numbers, sign(mechanism, data))."""
        self.handle = handle
        self._public = public_key_from_numbers(handle.key_type, handle.public_numbers)
        self.hash = signature_hash(self._public)

    def public_key(self):
        return self._public

    # --- the one signing step
    def _sign(self, tbs: bytes) -> bytes:
        if isinstance(self._public, rsa.RSAPublicKey):
            mechanism = "CKM_SHA384_RSA_PKCS" if isinstance(self.hash, hashes.SHA384) else "CKM_SHA256_RSA_PKCS"
            return self.handle.sign(mechanism, tbs)
        digest = hashes.Hash(self.hash)
        digest.update(tbs)
        raw = self.handle.sign("CKM_ECDSA", digest.finalize())
        half = len(raw) // 2
        if len(raw) % 2 or half == 0:
            raise HsmSignatureError("the HSM returned a malformed ECDSA signature")
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def _verify(self, signature: bytes, tbs: bytes) -> None:
        try:
            if isinstance(self._public, rsa.RSAPublicKey):
                self._public.verify(signature, tbs, padding.PKCS1v15(), self.hash)
            else:
                self._public.verify(signature, tbs, ec.ECDSA(self.hash))
        except InvalidSignature:
            raise HsmSignatureError("the HSM's signature does not verify with the CA's public key") from None

    def _assemble(self, template_der: bytes, tbs: bytes) -> bytes:
        """Sign `tbs` in the HSM and wrap it with the throwaway-signed template's signatureAlgorithm."""
        parts = der_elements(template_der)
        if len(parts) != 3:
            raise HsmSignatureError("DER: a signed object has three parts")
        return signed_der(tbs, parts[1], self._sign(tbs))

    def _throwaway_key(self):
        return _throwaway("rsa" if isinstance(self._public, rsa.RSAPublicKey) else "ec")

    # --- the three kinds of signed objects
    def certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        template = builder.sign(self._throwaway_key(), self.hash)
        tbs = template.tbs_certificate_bytes
        der = self._assemble(template.public_bytes(serialization.Encoding.DER), tbs)
        cert = x509.load_der_x509_certificate(der)
        if cert.tbs_certificate_bytes != tbs or cert.public_bytes(serialization.Encoding.DER) != der:
            raise HsmSignatureError("the assembled certificate does not round-trip")
        self._verify(cert.signature, tbs)
        return cert

    def crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        template = builder.sign(self._throwaway_key(), self.hash)
        tbs = template.tbs_certlist_bytes
        der = self._assemble(template.public_bytes(serialization.Encoding.DER), tbs)
        crl = x509.load_der_x509_crl(der)
        if crl.tbs_certlist_bytes != tbs or not crl.is_signature_valid(self._public):
            raise HsmSignatureError("the assembled CRL does not verify with the CA's public key")
        return crl

    def csr(self, builder: x509.CertificateSigningRequestBuilder) -> x509.CertificateSigningRequest:
        template = builder.sign(self._throwaway_key(), self.hash)
        # CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes [0] }
        info = der_elements(template.tbs_certrequest_bytes)
        if len(info) != 4:
            raise HsmSignatureError("DER: unexpected CertificationRequestInfo")
        info[2] = self._public.public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        tbs = der_tlv(0x30, b"".join(info))
        der = self._assemble(template.public_bytes(serialization.Encoding.DER), tbs)
        csr = x509.load_der_x509_csr(der)
        if csr.tbs_certrequest_bytes != tbs or csr.public_key() != self._public or not csr.is_signature_valid:
            raise HsmSignatureError("the assembled CSR does not verify with the CA's public key")
        return csr
