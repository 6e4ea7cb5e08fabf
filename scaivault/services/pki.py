"""Internal CAs, roles, issuance and signing, inventory, revocation and cached CRLs (spec/40).

CA private keys are sealed by the keyring under SealContext(partner, tenant, "pki_ca_key",
ca id, 0) and opened only in memory to sign; with KMS_PROVIDER=pkcs11 a CA created with
`key_storage: hsm` has its key generated inside the HSM token instead (never extractable).
Either way scaivault.pki.signer signs, so both kinds of CA share one code path.

Every issued certificate is also written as a `certificate` secret (pki/<ca name>/<serial> or
the request's secret_path), so reading it goes through the secret policies and audit. CRLs are
cached in the CA row (DER) and per process; a revocation marks the CA stale and a background
regeneration replaces the cached CRL, so a revoke never waits for a CRL of thousands of entries
to be signed.
"""
from __future__ import annotations

import json
import logging
import re
import secrets as pyrandom
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from cryptography import x509

from ..audit import AuditEntry, record
from ..config import Settings, parse_duration
from ..crypto import SealContext, register_sealed_column
from ..db import Database
from ..errors import ScaiVaultError, ValidationFailed
from ..lifecycle.hooks import certificate_changed
from ..pki import roles as role_rules
from ..pki import signer as pki_signer
from ..pki import x509 as px
from ..policy.paths import validate_path
from .policies import decode_cursor, encode_cursor, iso, page_limit
from .secrets import SecretOwner, SecretStore, WriteRequest

log = logging.getLogger("scaivault.pki")

register_sealed_column("pki_cas", "sealed_key", key_column="id")

CA_KEY_KIND = "pki_ca_key"
CA_TYPES = ("root", "intermediate")
KEY_STORAGES = ("sealed", "hsm")
DEFAULT_VALIDITY_DAYS = {"root": 3650, "intermediate": 1825}
CRL_VALIDITY = timedelta(hours=24)        # nextUpdate = thisUpdate + 24h
CRL_REFRESH_BEFORE = timedelta(hours=12)  # the schedule re-signs a CRL with less than this left
REVOCATION_OVERLAP = timedelta(minutes=5)  # incremental CRL passes re-read this much before their last one
CRL_WAIT_SECONDS = 0.1                    # a fetch of a stale CRL waits at most this long, then gets the last one
RENEW_AT = 2 / 3                          # auto_renew at two thirds of the lifetime
RENEW_LOCK_SPACE = 12012                  # first key of the renewal advisory locks (second: hash of the id)
RESERVED_CA_NAMES = frozenset({"ca", "roles", "issue", "sign", "certificates", "acme", "dns"})
# every column but the cached CRL blob (hundreds of KiB with many revocations)
CA_COLUMNS = ("id, partner_id, tenant_id, name, common_name, ca_type, parent_ca_id, key_type, key_size, status, origin, "
              "certificate_pem, chain_pem, csr_pem, sealed_key, serial_number, valid_from, valid_until, "
              "certificates_issued, revoked_at, revocation_reason, revocations, crl_number, crl_revocations, "
              "crl_this_update, crl_next_update, created_at, created_by, key_storage, hsm_key_label, hsm_key_id")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LIST_DEFAULT, LIST_MAX = 100, 1000

AuditFn = Callable[..., AuditEntry]


def system_audit(row: dict, identity: str = "system:pki") -> AuditFn:
    """An audit-entry builder for work ScaiVault does itself on a tenant's behalf (jobs, runners)."""
    def build(action: str, *, secret_path: str | None = None, success: bool = True, extra: dict | None = None):
        return AuditEntry(action=action, tenant_id=row["tenant_id"], partner_id=row["partner_id"] or None,
                          identity_type="system", identity_id=identity, secret_path=secret_path, success=success,
                          extra_data=dict(extra or {}))
    return build


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_id(prefix: str) -> str:
    return prefix + pyrandom.token_hex(8)


def ca_policy_path(name: str) -> str:
    return f"pki/ca/{name}"


def role_policy_path(name: str) -> str:
    return f"pki/roles/{name}"


def certificate_policy_path(ca_name: str, serial: str) -> str:
    """Where policies address an issued certificate: the same path as its default secret."""
    return f"pki/{ca_name}/{serial}"


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValidationFailed({"name": f"{what} names are 1-64 of a-z 0-9 _ - (starting with a letter or digit)"})
    return value


@dataclass
class CaRequest:
    name: str
    common_name: str
    ca_type: str
    parent_ca_id: str | None = None
    key_type: str = "rsa"
    key_size: int | None = None
    ttl: str | None = None
    validity_days: int | None = None
    key_storage: str = "sealed"


@dataclass
class IssueRequest:
    common_name: str | None = None
    alt_names: list[str] = field(default_factory=list)
    ip_sans: list[str] = field(default_factory=list)
    ttl: str | None = None
    secret_path: str | None = None
    auto_renew: bool = False
    csr: str | None = None            # sign only


class CrlRefresher:
    """Regenerates CRLs off the request path: one runner per CA per process, coalescing requests."""

    def __init__(self, regenerate: Callable[[str], None]):
        self._regenerate = regenerate
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._again: set[str] = set()

    def schedule(self, ca_id: str) -> threading.Event:
        with self._lock:
            done = self._running.get(ca_id)
            if done is not None:
                self._again.add(ca_id)
                return done
            done = self._running[ca_id] = threading.Event()
        threading.Thread(target=self._run, args=(ca_id, done), name=f"crl-{ca_id}", daemon=True).start()
        return done

    def _run(self, ca_id: str, done: threading.Event) -> None:
        try:
            while True:
                try:
                    self._regenerate(ca_id)
                except Exception as exc:   # logged; the schedule retries
                    log.error("CRL regeneration failed", extra={"ca_id": ca_id, "error": type(exc).__name__})
                with self._lock:
                    if ca_id not in self._again:
                        del self._running[ca_id]
                        return
                    self._again.discard(ca_id)
        finally:
            done.set()

    def wait(self, ca_id: str, timeout: float) -> None:
        with self._lock:
            done = self._running.get(ca_id)
        if done is not None:
            done.wait(timeout)


class _RevokedEntries:
    """One CA's built CRL entries in this process, by serial, with each certificate's expiry."""

    def __init__(self, watermark: datetime):
        self.watermark = watermark
        self.by_serial: dict[str, tuple[datetime, x509.RevokedCertificate]] = {}

    def merge(self, rows: list[dict], now: datetime) -> None:
        for r in rows:
            if r["serial_number"] not in self.by_serial:
                entry = px.revoked_entry(px.Revoked(r["serial_number"], r["revoked_at"], r["revocation_reason"]))
                self.by_serial[r["serial_number"]] = (r["not_after"], entry)
        self.watermark = now

    def entries(self, now: datetime) -> list[x509.RevokedCertificate]:
        expired = [serial for serial, (not_after, _) in self.by_serial.items() if not_after <= now]
        for serial in expired:
            del self.by_serial[serial]
        return [entry for _, entry in self.by_serial.values()]


class PkiService:
    """Domain operations of the PKI engine; callers pass the tenant owner, actor and audit builder."""

    def __init__(self, db: Database, keyring, settings: Settings, secret_store: SecretStore):
        self.db = db
        self.keyring = keyring
        self.settings = settings
        self.secrets = secret_store
        self.refresher = CrlRefresher(self.regenerate_crl)
        self._crl_cache: dict[str, tuple[int, bytes]] = {}
        self._revoked: dict[str, _RevokedEntries] = {}
        self._hsm_signers: dict[str, pki_signer.HsmSigner] = {}
        self._hsm_lock = threading.Lock()
        self._hsm = None            # the KMS token's signing keys, once a CA needs them

    # ================================================================== CA rows and keys
    def _seal_ctx(self, row: dict) -> SealContext:
        return SealContext(row["partner_id"], row["tenant_id"], CA_KEY_KIND, row["id"], 0)

    def _ca(self, owner: SecretOwner, ca_id: str, *, lock_session=None) -> dict:
        sql = f"SELECT {CA_COLUMNS} FROM pki_cas WHERE id = :id AND tenant_id = :tenant" + (" FOR UPDATE" if lock_session else "")
        row = (lock_session or self.db).one(sql, id=str(ca_id)[:64], tenant=owner.tenant_id)
        if row is None:
            raise ScaiVaultError("ca_not_found", "no CA with this id in this tenant", details={"ca_id": str(ca_id)[:64]})
        return row

    def _issuer(self, row: dict) -> px.Issuer:
        if row["status"] == "pending" or not row["certificate_pem"]:
            raise ScaiVaultError("ca_not_ready", "the CA has no certificate yet: install the signed certificate first",
                                 details={"ca_id": row["id"]})
        return px.Issuer(px.load_certificate(row["certificate_pem"]), self._signer(row), *self._urls(row["id"]))

    def _signer(self, row: dict) -> pki_signer.Signer:
        """What signs for this CA: its sealed key opened in memory, or its key in the HSM."""
        if row["key_storage"] != "hsm":
            return pki_signer.LocalSigner(
                px.load_private_key(self.keyring.open(self._seal_ctx(row), bytes(row["sealed_key"])), sealed=True))
        signer = self._hsm_signers.get(row["id"])
        if signer is None:
            signer = pki_signer.HsmSigner(self._hsm_keys().key(bytes.fromhex(row["hsm_key_id"])))
            self._hsm_signers[row["id"]] = signer       # the key pair never changes; the handle re-finds it
        return signer

    def _hsm_keys(self):
        """The KMS token's signing keys; 400 hsm_not_configured unless KMS_PROVIDER=pkcs11."""
        provider = self.keyring.primary if self.settings.kms_provider == "pkcs11" else None
        keys = getattr(provider, "signing_keys", None)
        if keys is None:
            raise ScaiVaultError("hsm_not_configured",
                                 "key_storage hsm needs the HSM as KMS provider (KMS_PROVIDER=pkcs11); "
                                 f"this server uses {self.settings.kms_provider}",
                                 details={"field": "key_storage", "kms_provider": self.settings.kms_provider})
        with self._hsm_lock:
            if self._hsm is None:
                self._hsm = keys()
            return self._hsm

    def _urls(self, ca_id: str) -> tuple[str | None, str | None]:
        base = (self.settings.base_url or "").rstrip("/")
        if not base:
            return None, None
        return f"{base}/v1/pki/ca/{ca_id}/crl", f"{base}/v1/pki/ca/{ca_id}/certificate"

    def chain_of(self, row: dict) -> list[str]:
        """The CA's certificate then every issuer above it, up to the root when known."""
        chain = [row["certificate_pem"]] if row["certificate_pem"] else []
        if row["chain_pem"]:
            chain += px.split_pems(row["chain_pem"])
        return chain

    @staticmethod
    def ca_view(row: dict) -> dict:
        out = {
            "id": row["id"], "name": row["name"], "common_name": row["common_name"], "ca_type": row["ca_type"],
            "parent_ca_id": row["parent_ca_id"], "key_type": row["key_type"], "key_size": row["key_size"],
            "status": row["status"], "origin": row["origin"], "is_active": row["status"] == "active",
            "serial_number": row["serial_number"], "valid_from": iso(row["valid_from"]),
            "valid_until": iso(row["valid_until"]), "certificates_issued": row["certificates_issued"],
            "revoked_at": iso(row["revoked_at"]), "revocation_reason": row["revocation_reason"],
            "crl_number": row["crl_number"], "crl_next_update": iso(row["crl_next_update"]),
            "created_at": iso(row["created_at"]), "certificate_pem": row["certificate_pem"],
            "key_storage": row["key_storage"],
        }
        if row["key_storage"] == "hsm":
            out["hsm_key_label"] = row["hsm_key_label"]
            out["hsm_key_id"] = row["hsm_key_id"]
        if row["status"] == "pending":
            out["csr"] = row["csr_pem"]
        return out

    # ================================================================== CA lifecycle
    def create_ca(self, owner: SecretOwner, req: CaRequest, actor: str, audit: AuditFn) -> dict:
        """A root (self-signed), an intermediate under a ScaiVault CA, or one whose CSR goes out."""
        check_name(req.name, "CA")
        if req.name in RESERVED_CA_NAMES:
            raise ValidationFailed({"name": f"{req.name!r} is reserved (it names a PKI path)"})
        if req.ca_type not in CA_TYPES:
            raise ValidationFailed({"ca_type": "must be root or intermediate"})
        key_type, key_size = _ca_key_shape(req.key_type, req.key_size)
        lifetime = _ca_lifetime(req)
        storage = req.key_storage or "sealed"
        if storage not in KEY_STORAGES:
            raise ValidationFailed({"key_storage": "sealed (default: sealed by the key hierarchy) or hsm"})
        hsm = self._hsm_keys() if storage == "hsm" else None
        ca_id = _new_id("ca_")
        parent = issuer = None
        if req.ca_type == "root" and req.parent_ca_id:
            raise ValidationFailed({"parent_ca_id": "a root has no parent"})
        if req.parent_ca_id:
            parent = self._ca(owner, req.parent_ca_id)
            if parent["status"] != "active":
                raise ScaiVaultError("ca_not_ready" if parent["status"] == "pending" else "ca_revoked",
                                     "the parent CA cannot sign", details={"parent_ca_id": parent["id"]})
            issuer = self._issuer(parent)
        now = _now()
        not_after = now + lifetime
        if parent is not None and not_after > parent["valid_until"]:
            raise ScaiVaultError("certificate_not_allowed", "the intermediate would outlive its parent CA",
                                 status=400, details={"field": "ttl", "value": iso(not_after),
                                                      "parent_valid_until": iso(parent["valid_until"])})
        row = {"id": ca_id, "partner_id": owner.partner_id, "tenant_id": owner.tenant_id}
        hsm_label = hsm_id = sealed = None
        if storage == "hsm":
            if self.db.one("SELECT 1 AS x FROM pki_cas WHERE tenant_id = :t AND name = :n", t=owner.tenant_id,
                           n=req.name):
                raise ScaiVaultError("conflict", "a CA with this name exists in this tenant", details={"name": req.name})
            hsm_label = f"scaivault-ca:{ca_id}"
            hsm_id = px.off_the_event_loop(hsm.generate, key_type, key_size, hsm_label).hex()   # RSA 4096: ~1.5 s
        else:
            key = px.off_the_event_loop(px.generate_key, key_type, key_size)   # RSA 4096: up to seconds
            signer = pki_signer.LocalSigner(key)
            sealed = self.keyring.seal(self._seal_ctx(row), px.private_key_pem(key).encode())
        try:
            if hsm_id is not None:
                signer = pki_signer.HsmSigner(hsm.key(bytes.fromhex(hsm_id)))
            cert = csr = None
            if req.ca_type == "root":
                cert = px.ca_certificate(req.common_name, signer.public_key(), px.Issuer(None, signer), now, not_after)
            elif parent is not None:
                cert = px.ca_certificate(req.common_name, signer.public_key(), issuer, now, not_after)
            else:
                csr = px.ca_csr(req.common_name, signer)
            with self.db.transaction() as s:
                created = self._insert_ca(s, owner, ca_id, req.name, req.common_name, req.ca_type,
                                          parent["id"] if parent else None, key_type, key_size,
                                          "active" if cert else "pending",
                                          "generated" if (cert or parent) else "external", cert, csr, sealed,
                                          self.chain_of(parent) if parent else None, actor,
                                          key_storage=storage, hsm_key_label=hsm_label, hsm_key_id=hsm_id)
                if parent is not None and cert is not None:
                    self._record_ca_certificate(s, owner, parent, ca_id, req.common_name, cert, actor)
                record(s, audit("pki_ca_create", secret_path=ca_policy_path(req.name),
                                extra={"ca_id": ca_id, "ca_type": req.ca_type, "origin": created["origin"],
                                       "key_storage": storage}))
        except BaseException:
            if hsm_id is not None:      # no row names the key pair: take it out of the token again
                try:
                    hsm.destroy(bytes.fromhex(hsm_id))
                except Exception as exc:
                    log.error("could not remove an unused HSM key pair",
                              extra={"hsm_key_label": hsm_label, "error": type(exc).__name__})
            raise
        if storage == "hsm":
            self._hsm_signers[ca_id] = signer
        if cert is not None:
            self.regenerate_crl(ca_id, force=True)
            created = self._ca(owner, ca_id)
        return self.ca_view(created)

    def _insert_ca(self, s, owner: SecretOwner, ca_id: str, name: str, common_name: str, ca_type: str,
                   parent_id: str | None, key_type: str, key_size: int, status: str, origin: str,
                   cert: x509.Certificate | None, csr, sealed: bytes | None, chain: list[str] | None, actor: str,
                   *, key_storage: str = "sealed", hsm_key_label: str | None = None,
                   hsm_key_id: str | None = None) -> dict:
        if s.one("SELECT 1 AS x FROM pki_cas WHERE tenant_id = :t AND name = :n", t=owner.tenant_id, n=name):
            raise ScaiVaultError("conflict", "a CA with this name exists in this tenant", details={"name": name})
        return s.one(
            """INSERT INTO pki_cas (id, partner_id, tenant_id, name, common_name, ca_type, parent_ca_id, key_type,
                                    key_size, status, origin, certificate_pem, chain_pem, csr_pem, sealed_key,
                                    serial_number, valid_from, valid_until, created_by, key_storage, hsm_key_label,
                                    hsm_key_id)
               VALUES (:id, :partner, :tenant, :name, :cn, :type, :parent, :kt, :ks, :status, :origin, :cert,
                       :chain, :csr, :sealed, :serial, :vf, :vu, :actor, :storage, :hsm_label, :hsm_id)
               RETURNING """ + CA_COLUMNS,
            id=ca_id, partner=owner.partner_id, tenant=owner.tenant_id, name=name, cn=common_name, type=ca_type,
            parent=parent_id, kt=key_type, ks=key_size, status=status, origin=origin,
            cert=px.cert_pem(cert) if cert else None, chain="".join(chain) if chain else None,
            csr=px.csr_pem(csr) if csr is not None else None, sealed=sealed,
            serial=px.serial_hex(cert.serial_number) if cert else None,
            vf=cert.not_valid_before_utc if cert else None, vu=cert.not_valid_after_utc if cert else None,
            actor=actor, storage=key_storage, hsm_label=hsm_key_label, hsm_id=hsm_key_id)

    def _record_ca_certificate(self, s, owner: SecretOwner, parent: dict, ca_id: str, common_name: str,
                               cert: x509.Certificate, actor: str) -> None:
        """The intermediate's own certificate in its parent's inventory, so revoking it reaches the parent's CRL."""
        s.execute("""INSERT INTO pki_certificates (id, partner_id, tenant_id, ca_id, serial_number, common_name,
                                                   not_before, not_after, certificate_pem, source, created_by)
                     VALUES (:id, :partner, :tenant, :ca, :serial, :cn, :nb, :na, :pem, 'ca', :actor)""",
                  id=ca_id, partner=owner.partner_id, tenant=owner.tenant_id, ca=parent["id"],
                  serial=px.serial_hex(cert.serial_number), cn=common_name, nb=cert.not_valid_before_utc,
                  na=cert.not_valid_after_utc, pem=px.cert_pem(cert), actor=actor)
        s.execute("UPDATE pki_cas SET certificates_issued = certificates_issued + 1 WHERE id = :id", id=parent["id"])

    def install_ca_certificate(self, owner: SecretOwner, ca_id: str, certificate: str, chain: list[str],
                               actor: str, audit: AuditFn) -> dict:
        """Install the certificate an outside root signed for a pending intermediate's CSR."""
        row = self._ca(owner, ca_id)
        if row["status"] != "pending":
            raise ScaiVaultError("conflict", "the CA already has its certificate", details={"ca_id": row["id"]})
        cert = _ca_cert_or_400(certificate)
        if cert.public_key() != self._signer(row).public_key():
            raise ScaiVaultError("invalid_request", "the certificate is not for this CA's key (from its CSR)")
        chain_pems = _chain_or_400(chain)
        _check_signed_by(cert, chain_pems)
        with self.db.transaction() as s:
            updated = s.one("""UPDATE pki_cas SET status = 'active', certificate_pem = :cert, chain_pem = :chain,
                                      serial_number = :serial, valid_from = :vf, valid_until = :vu
                                WHERE id = :id AND status = 'pending' RETURNING """ + CA_COLUMNS,
                            id=row["id"], cert=px.cert_pem(cert), chain="".join(chain_pems) or None,
                            serial=px.serial_hex(cert.serial_number), vf=cert.not_valid_before_utc,
                            vu=cert.not_valid_after_utc)
            if updated is None:
                raise ScaiVaultError("conflict", "the CA already has its certificate", details={"ca_id": row["id"]})
            record(s, audit("pki_ca_create", secret_path=ca_policy_path(row["name"]),
                            extra={"ca_id": row["id"], "installed_certificate": True}))
        self.regenerate_crl(row["id"], force=True)
        return self.ca_view(self._ca(owner, row["id"]))

    def import_ca(self, owner: SecretOwner, name: str, certificate: str, private_key: str, chain: list[str],
                  actor: str, audit: AuditFn) -> dict:
        """An existing CA (certificate and key) brought in; the key is sealed at once."""
        check_name(name, "CA")
        if name in RESERVED_CA_NAMES:
            raise ValidationFailed({"name": f"{name!r} is reserved (it names a PKI path)"})
        cert = _ca_cert_or_400(certificate)
        try:
            key = px.load_private_key(private_key)
        except px.X509Problem as exc:
            raise ScaiVaultError("invalid_request", str(exc), details={"field": "private_key"}) from None
        if cert.public_key() != key.public_key():
            raise ScaiVaultError("invalid_request", "the private key does not match the certificate")
        key_type, key_size = px.key_shape(key)
        self_signed = cert.issuer == cert.subject
        chain_pems = _chain_or_400(chain)
        if not self_signed:
            _check_signed_by(cert, chain_pems)
        cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        common_name = str(cns[0].value) if cns else cert.subject.rfc4514_string()
        ca_id = _new_id("ca_")
        sealed = self.keyring.seal(self._seal_ctx({"id": ca_id, "partner_id": owner.partner_id,
                                                   "tenant_id": owner.tenant_id}), px.private_key_pem(key).encode())
        with self.db.transaction() as s:
            self._insert_ca(s, owner, ca_id, name, common_name, "root" if self_signed else "intermediate", None,
                            key_type, key_size, "active", "imported", cert, None, sealed, chain_pems, actor)
            record(s, audit("pki_ca_create", secret_path=ca_policy_path(name),
                            extra={"ca_id": ca_id, "origin": "imported"}))
        self.regenerate_crl(ca_id, force=True)
        return self.ca_view(self._ca(owner, ca_id))

    def list_cas(self, owner: SecretOwner, visible: Callable[[str], bool]) -> list[dict]:
        rows = self.db.query(f"SELECT {CA_COLUMNS} FROM pki_cas WHERE tenant_id = :t ORDER BY created_at, id",
                             t=owner.tenant_id)
        return [self.ca_view(r) for r in rows if visible(ca_policy_path(r["name"]))]

    def get_ca(self, owner: SecretOwner, ca_id: str) -> dict:
        return self._ca(owner, ca_id)

    def revoke_ca(self, owner: SecretOwner, ca_id: str, reason: str | None, actor: str, audit: AuditFn) -> dict:
        """Revoke the CA, every CA below it and every certificate any of them issued."""
        reason = _reason(reason or "cessation_of_operation")
        row = self._ca(owner, ca_id)
        with self.db.transaction() as s:
            tree = [r["id"] for r in s.query(
                """WITH RECURSIVE tree AS (SELECT id FROM pki_cas WHERE id = :id
                                           UNION SELECT c.id FROM pki_cas c JOIN tree t ON c.parent_ca_id = t.id)
                   SELECT id FROM tree""", id=row["id"])]
            s.execute("""UPDATE pki_cas SET status = 'revoked', revoked_at = now(), revocation_reason = :reason
                          WHERE id = ANY(CAST(:tree AS text[])) AND status <> 'revoked'""", tree=tree, reason=reason)
            touched = [r["ca_id"] for r in s.query(
                """UPDATE pki_certificates SET revoked_at = now(), revocation_reason = :reason
                    WHERE tenant_id = :tenant AND revoked_at IS NULL
                      AND (ca_id = ANY(CAST(:tree AS text[])) OR id = ANY(CAST(:tree AS text[])))
                   RETURNING ca_id""", tree=tree, reason=reason, tenant=owner.tenant_id)]
            stale = sorted(set(touched))
            if stale:
                s.execute("UPDATE pki_cas SET revocations = revocations + 1 WHERE id = ANY(CAST(:ids AS text[]))",
                          ids=stale)
            record(s, audit("pki_revoke", secret_path=ca_policy_path(row["name"]),
                            extra={"ca_id": row["id"], "reason": reason, "cas_revoked": len(tree),
                                   "certificates_revoked": len(touched), "event": "certificate.revoked"}))
        for stale_id in stale:
            self.refresher.schedule(stale_id)
        view = self.ca_view(self._ca(owner, row["id"]))
        view["cas_revoked"] = len(tree)
        view["certificates_revoked"] = len(touched)
        return view

    # ================================================================== anonymous distribution
    def public_ca(self, ca_id: str) -> dict:
        row = self.db.one("SELECT id, status, certificate_pem, chain_pem FROM pki_cas WHERE id = :id", id=str(ca_id)[:64])
        if row is None or not row["certificate_pem"]:
            raise ScaiVaultError("ca_not_found", "no CA with this id has a certificate",
                                 details={"ca_id": str(ca_id)[:64]})
        return row

    def crl_der(self, ca_id: str) -> bytes:
        """The CA's current CRL; a stale one (revocations since, or past half-life) is refreshed first."""
        ca_id = str(ca_id)[:64]
        for attempt in range(2):
            cached = self._crl_cache.get(ca_id)
            row = self.db.one("""SELECT status, crl_number, revocations, crl_revocations, crl_next_update,
                                        CASE WHEN crl_number <> :known THEN crl_der END AS crl_der
                                   FROM pki_cas WHERE id = :id""", id=ca_id, known=cached[0] if cached else -1)
            if row is None or row["status"] == "pending":
                raise ScaiVaultError("ca_not_found", "no CA with this id publishes a CRL", details={"ca_id": ca_id})
            if row["crl_der"] is not None:
                cached = (row["crl_number"], bytes(row["crl_der"]))
                self._crl_cache[ca_id] = cached
            stale = (cached is None or row["crl_revocations"] < row["revocations"]
                     or row["crl_next_update"] is None or row["crl_next_update"] <= _now())
            if not stale or attempt == 1:
                break
            self.refresher.schedule(ca_id)
            self.refresher.wait(ca_id, CRL_WAIT_SECONDS)
        if cached is None:
            raise ScaiVaultError("service_unavailable", "the CRL is being generated; retry shortly",
                                 headers={"Retry-After": "1"})
        return cached[1]

    def regenerate_crl(self, ca_id: str, *, force: bool = False, full: bool = False) -> dict | None:
        """Sign a new CRL from the revoked, unexpired certificates (outside any row lock).

        Incremental: the process keeps the CA's built CRL entries and reads only revocations
        since its last pass (with an overlap for transactions that committed late); `full`
        (the schedule, and a process's first pass) re-reads them all.
        """
        now = _now()
        cache = self._revoked.get(ca_id)
        full = full or cache is None
        with self.db.transaction(isolation="REPEATABLE READ") as s:
            row = s.one(f"SELECT {CA_COLUMNS} FROM pki_cas WHERE id = :id", id=ca_id)
            if row is None or row["status"] == "pending":
                return None
            if not force and row["crl_revocations"] >= row["revocations"] and row["crl_next_update"] is not None \
                    and row["crl_next_update"] - now > CRL_REFRESH_BEFORE:
                return None
            since = datetime.min.replace(tzinfo=timezone.utc) if full else cache.watermark - REVOCATION_OVERLAP
            rows = s.run_prepared(
                """SELECT serial_number, revoked_at, revocation_reason, not_after FROM pki_certificates
                    WHERE ca_id = :id AND revoked_at IS NOT NULL AND revoked_at >= :since AND not_after > now()""",
                id=ca_id, since=since)
        if full:
            cache = _RevokedEntries(now)
        cache.merge(rows, now)
        issuer = self._issuer(row)
        der = px.off_the_event_loop(px.build_crl, issuer, cache.entries(now), row["crl_number"] + 1,
                                    now - px.BACKDATE, now + CRL_VALIDITY)
        with self.db.transaction() as s:
            # a newer CRL (more revocations seen) may have landed meanwhile: never go back
            updated = s.one("""UPDATE pki_cas SET crl_number = crl_number + 1, crl_der = :der, crl_revocations = :seen,
                                      crl_this_update = :tu, crl_next_update = :nu
                                WHERE id = :id AND crl_revocations <= :seen AND crl_number = :number
                               RETURNING crl_number, crl_next_update""",
                            id=ca_id, der=der, seen=row["revocations"], tu=now, nu=now + CRL_VALIDITY,
                            number=row["crl_number"])
        self._revoked[ca_id] = cache
        if updated is None:
            return None
        self._crl_cache[ca_id] = (updated["crl_number"], der)
        return {"crl_number": updated["crl_number"], "der": der, "this_update": iso(now),
                "next_update": iso(updated["crl_next_update"]), "entries": len(cache.by_serial)}

    def regenerate_now(self, owner: SecretOwner, ca_id: str, audit: AuditFn) -> dict:
        row = self._ca(owner, ca_id)
        if row["status"] == "pending":
            raise ScaiVaultError("ca_not_ready", "the CA has no certificate yet", details={"ca_id": row["id"]})
        result = None
        for _ in range(3):   # lost a race with a concurrent regeneration: sign again on the new number
            result = self.regenerate_crl(row["id"], force=True, full=True)
            if result is not None:
                break
        if result is None:
            raise ScaiVaultError("conflict", "the CRL is being regenerated concurrently; retry")
        with self.db.transaction() as s:
            record(s, audit("pki_ca_create", secret_path=ca_policy_path(row["name"]),
                            extra={"ca_id": row["id"], "crl_number": result["crl_number"], "crl": "regenerated"}))
        return {"ca_id": row["id"], "crl_number": result["crl_number"], "this_update": result["this_update"],
                "next_update": result["next_update"], "entries": result["entries"], "crl": px.crl_pem(result["der"])}

    def refresh_due_crls(self) -> int:
        """The schedule: re-sign CRLs that are stale or near their nextUpdate."""
        rows = self.db.query("""SELECT id FROM pki_cas WHERE status <> 'pending'
                                  AND (crl_revocations < revocations OR crl_next_update IS NULL
                                       OR crl_next_update < :due)""", due=_now() + CRL_REFRESH_BEFORE)
        for row in rows:
            try:
                self.regenerate_crl(row["id"], full=True)
            except Exception as exc:
                log.error("scheduled CRL regeneration failed", extra={"ca_id": row["id"], "error": type(exc).__name__})
        return len(rows)

    # ================================================================== roles
    def _role(self, owner: SecretOwner, name: str) -> dict:
        row = self.db.one("SELECT * FROM pki_roles WHERE tenant_id = :t AND name = :n", t=owner.tenant_id,
                          n=str(name)[:64])
        if row is None:
            raise ScaiVaultError("role_not_found", "no PKI role with this name", details={"role": str(name)[:64]})
        return row

    @staticmethod
    def role_view(row: dict) -> dict:
        return {"name": row["name"], "ca_id": row["ca_id"], **row["config"],
                "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}

    def _role_ca(self, owner: SecretOwner, ca_id: Any) -> dict:
        if not isinstance(ca_id, str) or not ca_id:
            raise ValidationFailed({"ca_id": "the id of the CA that signs for this role is required"})
        ca = self._ca(owner, ca_id)
        if ca["status"] == "pending":
            raise ScaiVaultError("ca_not_ready", "the CA has no certificate yet", details={"ca_id": ca["id"]})
        return ca

    def create_role(self, owner: SecretOwner, body: dict, audit: AuditFn) -> dict:
        name = check_name(body.get("name"), "role")
        ca = self._role_ca(owner, body.get("ca_id"))
        config = role_rules.validate_config(body)
        with self.db.transaction() as s:
            row = s.one("""INSERT INTO pki_roles (tenant_id, partner_id, name, ca_id, config)
                           VALUES (:t, :p, :n, :ca, CAST(:config AS jsonb))
                           ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *""",
                        t=owner.tenant_id, p=owner.partner_id, n=name, ca=ca["id"], config=json.dumps(config))
            if row is None:
                raise ScaiVaultError("conflict", "a PKI role with this name exists", details={"role": name})
            record(s, audit("pki_admin", secret_path=role_policy_path(name), extra={"role": name, "op": "create"}))
        return self.role_view(row)

    def update_role(self, owner: SecretOwner, name: str, patch: dict, audit: AuditFn) -> dict:
        row = self._role(owner, name)
        ca_id = row["ca_id"]
        if "ca_id" in patch:
            ca_id = self._role_ca(owner, patch["ca_id"])["id"]
        config = role_rules.validate_config(patch, row["config"])
        with self.db.transaction() as s:
            updated = s.one("""UPDATE pki_roles SET ca_id = :ca, config = CAST(:config AS jsonb), updated_at = now()
                                WHERE tenant_id = :t AND name = :n RETURNING *""",
                            ca=ca_id, config=json.dumps(config), t=owner.tenant_id, n=row["name"])
            record(s, audit("pki_admin", secret_path=role_policy_path(row["name"]),
                            extra={"role": row["name"], "op": "update"}))
        return self.role_view(updated)

    def delete_role(self, owner: SecretOwner, name: str, audit: AuditFn) -> None:
        """Certificates issued under the role stay valid; renewal of them stops."""
        row = self._role(owner, name)
        with self.db.transaction() as s:
            s.execute("DELETE FROM pki_roles WHERE tenant_id = :t AND name = :n", t=owner.tenant_id, n=row["name"])
            record(s, audit("pki_admin", secret_path=role_policy_path(row["name"]),
                            extra={"role": row["name"], "op": "delete"}))

    def list_roles(self, owner: SecretOwner, visible: Callable[[str], bool]) -> list[dict]:
        rows = self.db.query("SELECT * FROM pki_roles WHERE tenant_id = :t ORDER BY name", t=owner.tenant_id)
        return [self.role_view(r) for r in rows if visible(role_policy_path(r["name"]))]

    def get_role(self, owner: SecretOwner, name: str) -> dict:
        return self.role_view(self._role(owner, name))

    # ================================================================== issue and sign
    def issue(self, owner: SecretOwner, role_name: str, req: IssueRequest, actor: str, audit: AuditFn,
              *, source: str = "issue", renews: str | None = None) -> dict:
        """Generate a key and certificate under the role; the private key is returned once."""
        role = self._role(owner, role_name)
        config = role["config"]
        cn, dns_names, ips = role_rules.check_names(config, req.common_name, req.alt_names, req.ip_sans)
        seconds = role_rules.check_ttl(config, req.ttl)
        if req.auto_renew and not config["store_private_keys"]:
            raise role_rules.not_allowed("auto_renew needs a role with store_private_keys (the renewed key must "
                                         "reach the secret)", "auto_renew", "auto_renew")
        ca = self._ca(owner, role["ca_id"])
        key_type = "rsa" if config["key_type"] == "any" else config["key_type"]
        key_bits = config["key_bits"] or px.DEFAULT_KEY_SIZE[key_type]
        key = px.off_the_event_loop(px.generate_key, key_type, key_bits)
        key_pem = px.private_key_pem(key)
        renew_request = {"common_name": req.common_name, "alt_names": req.alt_names, "ip_sans": req.ip_sans,
                         "ttl": req.ttl}
        return self._mint(owner, role, ca, cn, dns_names, ips, seconds, key.public_key(), key_pem, req, actor, audit,
                          source=source, renew_request=renew_request, renews=renews,
                          store_key=config["store_private_keys"])

    def sign(self, owner: SecretOwner, role_name: str, req: IssueRequest, actor: str, audit: AuditFn,
             *, source: str = "sign", renews: str | None = None) -> dict:
        """Sign a caller's CSR under the role: the names in the CSR get the same checks as /issue."""
        role = self._role(owner, role_name)
        config = role["config"]
        try:
            csr = px.load_csr(req.csr or "")
        except px.X509Problem as exc:
            raise ScaiVaultError("invalid_request", str(exc), details={"field": "csr"}) from None
        try:
            key_type, key_bits = px.key_shape(csr.public_key())
        except px.X509Problem as exc:
            raise role_rules.not_allowed(str(exc), "csr", "csr") from None
        role_rules.check_key_shape(config, key_type, key_bits)
        csr_cn, csr_dns, csr_ips = px.names_in_csr(csr)
        cn, dns_names, ips = role_rules.check_names(config, csr_cn, csr_dns + list(req.alt_names),
                                                    csr_ips + list(req.ip_sans))
        seconds = role_rules.check_ttl(config, req.ttl)
        ca = self._ca(owner, role["ca_id"])
        renew_request = {"csr": req.csr, "alt_names": req.alt_names, "ip_sans": req.ip_sans, "ttl": req.ttl}
        return self._mint(owner, role, ca, cn, dns_names, ips, seconds, csr.public_key(), None, req, actor, audit,
                          source=source, renew_request=renew_request, renews=renews, store_key=False)

    def _mint(self, owner: SecretOwner, role: dict, ca: dict, cn: str | None, dns_names: list[str], ips: list[str],
              seconds: int, public_key, key_pem: str | None, req: IssueRequest, actor: str, audit: AuditFn, *,
              source: str, renew_request: dict, renews: str | None, store_key: bool) -> dict:
        if ca["status"] != "active":
            raise ScaiVaultError("ca_revoked" if ca["status"] == "revoked" else "ca_not_ready",
                                 "the role's CA cannot issue", details={"ca_id": ca["id"]})
        now = _now()
        not_after = now + timedelta(seconds=seconds)
        if not_after > ca["valid_until"]:
            raise role_rules.not_allowed("the certificate would outlive its CA", req.ttl or f"{seconds}s", "ttl")
        config = role["config"]
        issuer = self._issuer(ca)
        cert = px.leaf_certificate(common_name=cn, dns_names=dns_names, ip_sans=ips, public_key=public_key,
                                   issuer=issuer, not_before=now, not_after=not_after,
                                   server=config["server_flag"], client=config["client_flag"])
        serial = px.serial_hex(cert.serial_number)
        cert_id = _new_id("cert_")
        secret_path = req.secret_path or certificate_policy_path(ca["name"], serial)
        validate_path(secret_path)
        chain = self.chain_of(ca)
        pem = px.cert_pem(cert)
        # the secret first: a refused write (e.g. a restorable deleted secret at the path) leaves no
        # certificate behind that nobody received; the row and its audit entry follow
        data = {"cert_pem": pem, "chain_pem": "".join(chain)}
        if key_pem is not None and store_key:
            data["key_pem"] = key_pem
        self.secrets.write(owner, secret_path,
                           WriteRequest(data=data, secret_type="certificate",
                                        metadata={"description": f"certificate {serial} from CA {ca['name']}",
                                                  "certificate_id": cert_id, "serial_number": serial,
                                                  "ca_id": ca["id"], "not_after": iso(cert.not_valid_after_utc)}),
                           actor, audit)
        with self.db.transaction() as s:
            s.execute("""INSERT INTO pki_certificates (id, partner_id, tenant_id, ca_id, role_name, serial_number,
                                        common_name, dns_names, ip_sans, not_before, not_after, certificate_pem,
                                        secret_path, source, auto_renew, renew_request, created_by)
                         VALUES (:id, :partner, :tenant, :ca, :role, :serial, :cn, CAST(:dns AS jsonb),
                                 CAST(:ips AS jsonb), :nb, :na, :pem, :path, :source, :auto, CAST(:renew AS jsonb), :actor)""",
                      id=cert_id, partner=owner.partner_id, tenant=owner.tenant_id, ca=ca["id"], role=role["name"],
                      serial=serial, cn=cn, dns=json.dumps(dns_names), ips=json.dumps(ips),
                      nb=cert.not_valid_before_utc, na=cert.not_valid_after_utc, pem=pem, path=secret_path,
                      source=source, auto=req.auto_renew, renew=json.dumps(renew_request), actor=actor)
            s.execute("UPDATE pki_cas SET certificates_issued = certificates_issued + 1 WHERE id = :id", id=ca["id"])
            if renews:
                s.execute("UPDATE pki_certificates SET renewed_by = :new WHERE id = :old", new=cert_id, old=renews)
            event = "certificate.renewed" if renews else "certificate.issued"
            record(s, entry := audit("pki_sign" if source == "sign" else "pki_issue", secret_path=secret_path,
                                     extra={"certificate_id": cert_id, "serial_number": serial, "ca_id": ca["id"],
                                            "role": role["name"], "event": event, "names": dns_names[:20],
                                            **({"renews": renews} if renews else {})}))
            certificate_changed(s, entry)
        out = {"id": cert_id, "serial_number": serial, "certificate": pem, "ca_chain": chain,
               "issuing_ca": chain[0] if chain else None, "expires_at": iso(cert.not_valid_after_utc),
               "not_after": iso(cert.not_valid_after_utc), "secret_path": secret_path, "auto_renew": req.auto_renew}
        if key_pem is not None:
            out["private_key"] = key_pem
            out["private_key_type"] = "rsa" if "RSA" in type(public_key).__name__ else "ec"
        return out

    # ================================================================== inventory and revocation
    @staticmethod
    def certificate_view(row: dict) -> dict:
        return {
            "id": row["id"], "ca_id": row["ca_id"], "role": row["role_name"], "serial_number": row["serial_number"],
            "common_name": row["common_name"], "dns_names": row["dns_names"], "ip_sans": row["ip_sans"],
            "not_before": iso(row["not_before"]), "not_after": iso(row["not_after"]),
            "expires_at": iso(row["not_after"]), "revoked": row["revoked_at"] is not None,
            "revoked_at": iso(row["revoked_at"]), "revocation_reason": row["revocation_reason"],
            "secret_path": row["secret_path"], "source": row["source"], "auto_renew": row["auto_renew"],
            "renewed_by": row["renewed_by"], "created_at": iso(row["created_at"]),
        }

    def certificate_row(self, owner: SecretOwner, cert_id: str) -> dict:
        row = self.db.one("""SELECT c.*, a.name AS ca_name FROM pki_certificates c JOIN pki_cas a ON a.id = c.ca_id
                              WHERE c.id = :id AND c.tenant_id = :t""", id=str(cert_id)[:64], t=owner.tenant_id)
        if row is None:
            raise ScaiVaultError("certificate_not_found", "no certificate with this id",
                                 details={"certificate_id": str(cert_id)[:64]})
        return row

    def list_certificates(self, owner: SecretOwner, *, ca_id: str | None, expiring_within: int | None,
                          include_revoked: bool, limit: Any, cursor: str | None,
                          visible: Callable[[str], bool]) -> dict:
        size = page_limit(limit, LIST_DEFAULT, LIST_MAX)
        after = decode_cursor(cursor) or ""
        where = ["c.tenant_id = :t", "c.id > :after"]
        params: dict[str, Any] = {"t": owner.tenant_id, "after": after}
        if ca_id:
            where.append("c.ca_id = :ca")
            params["ca"] = ca_id
        if expiring_within is not None:
            where.append("c.not_after <= :horizon AND c.not_after > now()")
            params["horizon"] = _now() + timedelta(seconds=expiring_within)
        if not include_revoked:
            where.append("c.revoked_at IS NULL")
        items: list[dict] = []
        last = after
        for _ in range(50):   # bounded scan when policies hide most rows: answer with a cursor
            rows = self.db.query(f"""SELECT c.*, a.name AS ca_name FROM pki_certificates c
                                      JOIN pki_cas a ON a.id = c.ca_id
                                     WHERE {' AND '.join(where)} ORDER BY c.id LIMIT :n""",
                                 **{**params, "after": last}, n=size)
            for row in rows:
                if len(items) == size:
                    return {"certificates": items, "cursor": encode_cursor(last), "has_more": True}
                last = row["id"]
                if visible(certificate_policy_path(row["ca_name"], row["serial_number"])):
                    items.append(self.certificate_view(row))
            if len(rows) < size:
                return {"certificates": items, "cursor": None, "has_more": False}
        return {"certificates": items, "cursor": encode_cursor(last), "has_more": True}

    def revoke_certificate(self, owner: SecretOwner, cert_id: str, reason: str | None, audit: AuditFn) -> dict:
        """Mark the certificate revoked (idempotent) and have its CA's CRL re-signed at once, off this request."""
        reason = _reason(reason or "unspecified")
        row = self.certificate_row(owner, cert_id)
        with self.db.transaction() as s:
            updated = s.one("""UPDATE pki_certificates SET revoked_at = now(), revocation_reason = :reason
                                WHERE id = :id AND revoked_at IS NULL RETURNING *""", id=row["id"], reason=reason)
            if updated is not None:
                s.execute("UPDATE pki_cas SET revocations = revocations + 1 WHERE id = :id", id=row["ca_id"])
                if row["source"] == "ca":   # an intermediate's own certificate: the CA stops issuing
                    s.execute("""UPDATE pki_cas SET status = 'revoked', revoked_at = now(), revocation_reason = :r
                                  WHERE id = :id AND status <> 'revoked'""", id=row["id"], r=reason)
            record(s, entry := audit("pki_revoke",
                                     secret_path=certificate_policy_path(row["ca_name"], row["serial_number"]),
                                     extra={"certificate_id": row["id"], "serial_number": row["serial_number"],
                                            "ca_id": row["ca_id"], "reason": reason, "event": "certificate.revoked",
                                            "already_revoked": updated is None}))
            certificate_changed(s, entry)
        if updated is not None:
            self.refresher.schedule(row["ca_id"])
            row = {**row, **updated}
        return self.certificate_view(row)

    # ================================================================== renewal
    def renew_due(self, audit_for: Callable[[dict], AuditFn], *, now: datetime | None = None) -> int:
        """Re-issue auto_renew certificates past two thirds of their lifetime (one runner via row locks)."""
        now = now or _now()
        rows = self.db.query("""SELECT c.*, r.name AS live_role FROM pki_certificates c
                                  LEFT JOIN pki_roles r ON r.tenant_id = c.tenant_id AND r.name = c.role_name
                                 WHERE c.auto_renew AND c.renewed_by IS NULL AND c.revoked_at IS NULL
                                   AND c.not_before + (c.not_after - c.not_before) * :share <= :now
                                   AND c.not_after > :now LIMIT 100""", share=RENEW_AT, now=now)
        renewed = 0
        for row in rows:
            if row["live_role"] is None:
                continue
            owner = SecretOwner(row["partner_id"], row["tenant_id"])
            # a session-level lock lives on one connection: take and release it on the same one
            with self.db.session() as lock:
                if not lock.scalar("SELECT pg_try_advisory_lock(:space, hashtext(:id))", space=RENEW_LOCK_SPACE,
                                   id=row["id"]):
                    continue
                try:
                    if self._renew_one(owner, row, audit_for(row)):
                        renewed += 1
                except ScaiVaultError as exc:
                    log.warning("certificate renewal refused", extra={"certificate_id": row["id"], "error": exc.code})
                finally:
                    lock.scalar("SELECT pg_advisory_unlock(:space, hashtext(:id))", space=RENEW_LOCK_SPACE, id=row["id"])
        return renewed


    def _renew_one(self, owner: SecretOwner, row: dict, audit: AuditFn) -> bool:
        if self.db.scalar("SELECT renewed_by FROM pki_certificates WHERE id = :id", id=row["id"]):
            return False      # another runner renewed it between the listing and the lock
        spec = row["renew_request"] or {}
        lifetime = f"{int((row['not_after'] - row['not_before']).total_seconds())}s"
        req = IssueRequest(common_name=spec.get("common_name"), alt_names=spec.get("alt_names") or [],
                           ip_sans=spec.get("ip_sans") or [], ttl=spec.get("ttl") or lifetime,
                           secret_path=row["secret_path"], auto_renew=True, csr=spec.get("csr"))
        action = self.sign if row["source"] == "sign" or spec.get("csr") else self.issue
        action(owner, row["role_name"], req, "system:pki-renewal", audit, source="renew", renews=row["id"])
        return True


# ---------------------------------------------------------------------- helpers
def _ca_cert_or_400(pem: Any) -> x509.Certificate:
    if not isinstance(pem, str):
        raise ValidationFailed({"certificate": "a PEM certificate is required"})
    try:
        cert = px.load_certificate(pem)
    except px.X509Problem as exc:
        raise ScaiVaultError("invalid_request", str(exc), details={"field": "certificate"}) from None
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise x509.ExtensionNotFound("not a CA", x509.BasicConstraints.oid)
    except x509.ExtensionNotFound:
        raise ScaiVaultError("invalid_request", "the certificate is not a CA certificate (basicConstraints CA:TRUE)",
                             details={"field": "certificate"}) from None
    try:
        px.key_shape(cert.public_key())
    except px.X509Problem as exc:
        raise ScaiVaultError("invalid_request", str(exc), details={"field": "certificate"}) from None
    return cert


def _chain_or_400(chain: Any) -> list[str]:
    if chain is None:
        return []
    if not isinstance(chain, list) or len(chain) > 10 or not all(isinstance(c, str) for c in chain):
        raise ValidationFailed({"ca_chain": "a list of at most 10 PEM certificates"})
    out = []
    for pem in chain:
        for part in px.split_pems(pem):
            try:
                out.append(px.cert_pem(px.load_certificate(part)))
            except px.X509Problem:
                raise ScaiVaultError("invalid_request", "ca_chain holds something that is not a PEM certificate",
                                     details={"field": "ca_chain"}) from None
    return out


def _check_signed_by(cert: x509.Certificate, chain: list[str]) -> None:
    """When the issuer's certificate is given, the certificate must verify against it."""
    if not chain:
        return
    issuer = px.load_certificate(chain[0])
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):
        raise ScaiVaultError("invalid_request", "the certificate is not signed by the first certificate of ca_chain",
                             details={"field": "ca_chain"}) from None


def _reason(reason: Any) -> str:
    if not isinstance(reason, str) or reason not in px.REASONS:
        raise ValidationFailed({"reason": "an RFC 5280 reason: " + ", ".join(px.REASONS)})
    return reason


def _ca_key_shape(key_type: Any, key_size: Any) -> tuple[str, int]:
    if key_type not in ("rsa", "ec"):
        raise ValidationFailed({"key_type": "must be rsa or ec"})
    if key_size is None:
        return key_type, px.DEFAULT_KEY_SIZE[key_type]
    allowed = (2048, 4096) if key_type == "rsa" else (256, 384)
    if key_size not in allowed:
        raise ValidationFailed({"key_size": f"{key_type}: one of {', '.join(map(str, allowed))}"})
    return key_type, key_size


def _ca_lifetime(req: CaRequest) -> timedelta:
    if req.ttl is not None:
        try:
            seconds = parse_duration(req.ttl)
        except (ValueError, TypeError):
            raise ScaiVaultError("invalid_duration", "ttl must be a duration such as 87600h or 3650d",
                                 details={"field": "ttl"}) from None
        if seconds < 3600:
            raise ValidationFailed({"ttl": "a CA lives at least 1h"})
        return timedelta(seconds=seconds)
    days = req.validity_days if req.validity_days is not None else DEFAULT_VALIDITY_DAYS.get(req.ca_type, 1825)
    if not isinstance(days, int) or not 1 <= days <= 36500:
        raise ValidationFailed({"validity_days": "1..36500"})
    return timedelta(days=days)
