"""ACME client (RFC 8555 through the `acme` and `josepy` packages): accounts, orders, runners.

An account's key (EC P-256) is sealed under SealContext(partner, tenant, "acme_account_key",
account id, 0) and never returned. An order is a row; a runner (a background thread of some
instance) claims it with a heartbeat, so exactly one instance works on it, and a stale claim
(instance gone) is taken over by the resume job: the work survives a restart. The runner
answers http-01 through /.well-known/acme-challenge/<token> (rows in acme_http_challenges)
or dns-01 through a DNS provider plugin, checks propagation at the zone's authoritative
servers, finalizes, writes cert, key and chain to the order's secret, then removes its TXT
records and tokens.
"""
from __future__ import annotations

import json
import logging
import os
import secrets as pyrandom
import socket
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from ..audit import AuditEntry, record
from ..config import Settings
from ..crypto import SealContext, register_sealed_column
from ..db import Database
from ..errors import ScaiVaultError, ValidationFailed
from ..lifecycle.hooks import certificate_changed
from ..pki import x509 as px
from ..policy.paths import validate_path
from .dns_providers import (DnsProviderError, DnsProviderStore, authoritative_servers, challenge_name,
                            wait_for_propagation, zone_for)
from .pki import RENEW_AT, system_audit
from .policies import decode_cursor, encode_cursor, iso
from .secrets import SecretOwner, SecretStore, WriteRequest

log = logging.getLogger("scaivault.acme")

register_sealed_column("acme_accounts", "sealed_key", key_column="id")

ACCOUNT_KEY_KIND = "acme_account_key"
PROVIDERS = ("letsencrypt", "zerossl", "buypass", "google", "custom")
ENVIRONMENTS = ("production", "staging")
DIRECTORIES = {
    ("letsencrypt", "production"): "https://acme-v02.api.letsencrypt.org/directory",
    ("letsencrypt", "staging"): "https://acme-staging-v02.api.letsencrypt.org/directory",
    ("zerossl", "production"): "https://acme.zerossl.com/v2/DV90",
    ("buypass", "production"): "https://api.buypass.com/acme/directory",
    ("buypass", "staging"): "https://api.test4.buypass.no/acme/directory",
    ("google", "production"): "https://dv.acme-v02.api.pki.goog/directory",
    ("google", "staging"): "https://dv.acme-v02.test-api.pki.goog/directory",
}
EAB_REQUIRED = ("zerossl", "google")
CHALLENGES = ("http-01", "dns-01")
ORDER_KEY_TYPES = {"ec256": ("ec", 256), "ec384": ("ec", 384), "rsa2048": ("rsa", 2048), "rsa4096": ("rsa", 4096)}
STALE_AFTER = timedelta(minutes=2)       # a runner that has not beaten for this long is presumed gone
MAX_ATTEMPTS = 5
ORDER_TIMEOUT = timedelta(minutes=10)
PROPAGATION_TIMEOUT = 300.0
TXT_TTL = 60
MAX_DOMAINS = 100

AuditFn = Callable[..., AuditEntry]


class AcmeFailure(Exception):
    """The order cannot be completed; the message becomes the order's reason."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _acme():
    try:
        import josepy
        from acme import client, crypto_util, errors, messages
    except ImportError:   # pragma: no cover - the acme extra
        raise ScaiVaultError("service_unavailable", "the ACME client is not installed: pip install 'scaivault[acme]'")
    return josepy, client, crypto_util, errors, messages


def _describe(exc: Exception) -> str:
    """A bounded, credential-free reason for an order's failure."""
    _, _, _, _, messages = _acme()
    if isinstance(exc, AcmeFailure):
        text = str(exc)
    elif isinstance(exc, messages.Error):
        text = f"{exc.typ or 'acme error'}: {exc.detail or ''}".strip()
    elif isinstance(exc, DnsProviderError):
        text = f"DNS provider: {exc}"
    else:
        text = f"{type(exc).__name__}: {str(exc)[:300]}"
    return text[:500]


class AcmeService:
    """ACME accounts and orders of a tenant, and the background runners of orders."""

    def __init__(self, db: Database, keyring, settings: Settings, secret_store: SecretStore,
                 dns: DnsProviderStore):
        self.db = db
        self.keyring = keyring
        self.settings = settings
        self.secrets = secret_store
        self.dns = dns
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{pyrandom.token_hex(3)}"
        self._verify: str | bool | None = None
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # ================================================================== plumbing
    def _trust(self) -> str | bool:
        """requests' `verify`: the default store plus ACME_CA_BUNDLE when set."""
        if self._verify is None:
            if not self.settings.acme_ca_bundle:
                self._verify = True
            else:
                import certifi

                with open(certifi.where(), "rb") as base, open(self.settings.acme_ca_bundle, "rb") as extra:
                    fd, path = tempfile.mkstemp(prefix="scaivault-acme-ca-", suffix=".pem")
                    with os.fdopen(fd, "wb") as out:
                        out.write(base.read() + b"\n" + extra.read())
                self._verify = path
        return self._verify

    def _client(self, key_pem: bytes, directory_url: str, account_url: str | None = None):
        josepy, client, _, _, messages = _acme()
        jwk = josepy.JWKEC(key=px.load_private_key(key_pem))
        account = messages.RegistrationResource(body=messages.Registration(), uri=account_url) if account_url else None
        net = client.ClientNetwork(jwk, account=account, alg=josepy.ES256, verify_ssl=self._trust(),
                                   user_agent="scaivault-acme", timeout=30)
        directory = client.ClientV2.get_directory(directory_url, net)
        return client.ClientV2(directory, net), net, jwk, directory

    def _account_ctx(self, row: dict) -> SealContext:
        return SealContext(row["partner_id"], row["tenant_id"], ACCOUNT_KEY_KIND, row["id"], 0)

    # ================================================================== accounts
    @staticmethod
    def account_view(row: dict) -> dict:
        return {"id": row["id"], "name": row["name"], "provider": row["provider"], "environment": row["environment"],
                "email": row["email"], "directory_url": row["directory_url"], "account_url": row["account_url"],
                "eab_kid": row["eab_kid"], "status": row["status"], "created_at": iso(row["created_at"])}

    def register_account(self, owner: SecretOwner, body: dict, actor: str, audit: AuditFn) -> dict:
        """Make the account key, register it with the CA (with EAB when given or required), keep it sealed."""
        provider, environment = body.get("provider"), body.get("environment") or "production"
        name, email = body.get("name"), body.get("email")
        problems: dict[str, str] = {}
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            problems["name"] = "1-64 characters"
        if provider not in PROVIDERS:
            problems["provider"] = "one of " + ", ".join(PROVIDERS)
        if environment not in ENVIRONMENTS:
            problems["environment"] = "production or staging"
        if email is not None and (not isinstance(email, str) or "@" not in email or len(email) > 254):
            problems["email"] = "an e-mail address"
        directory_url = body.get("directory_url")
        if provider == "custom":
            if not isinstance(directory_url, str) or not directory_url.startswith(("https://", "http://")):
                problems["directory_url"] = "required for provider custom: the RFC 8555 directory URL"
        elif provider in PROVIDERS:
            directory_url = DIRECTORIES.get((provider, environment))
            if directory_url is None:
                problems["environment"] = f"{provider} publishes no {environment} directory"
        eab_kid, eab_hmac = body.get("eab_kid"), body.get("eab_hmac_key")
        if not eab_kid and eab_hmac or eab_kid and not eab_hmac:
            problems["eab_hmac_key"] = "eab_kid and eab_hmac_key go together"
        elif provider in EAB_REQUIRED and not eab_kid:
            problems["eab_kid"] = f"{provider} requires external account binding (eab_kid, eab_hmac_key)"
        if problems:
            raise ValidationFailed(problems)
        if self.db.one("SELECT 1 AS x FROM acme_accounts WHERE tenant_id = :t AND name = :n", t=owner.tenant_id, n=name):
            raise ScaiVaultError("conflict", "an ACME account with this name exists", details={"name": name})
        _, _, _, errors, messages = _acme()
        key = px.generate_key("ec", 256)
        key_pem = px.private_key_pem(key).encode()
        try:
            acme_client, net, jwk, directory = self._client(key_pem, directory_url)
            eab = None
            if eab_kid:
                eab = messages.ExternalAccountBinding.from_data(account_public_key=jwk.public_key(), kid=eab_kid,
                                                                hmac_key=eab_hmac, directory=directory)
            elif acme_client.external_account_required():
                raise ValidationFailed({"eab_kid": "this ACME server requires external account binding"})
            registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True,
                                                              external_account_binding=eab)
            regr = acme_client.new_account(registration)
        except ScaiVaultError:
            raise
        except Exception as exc:
            raise ScaiVaultError("acme_error", f"the ACME server refused the account: {_describe(exc)}",
                                 details={"directory_url": directory_url}) from None
        account_id = "acct_" + pyrandom.token_hex(8)
        row = {"id": account_id, "partner_id": owner.partner_id, "tenant_id": owner.tenant_id}
        sealed = self.keyring.seal(self._account_ctx(row), key_pem)
        with self.db.transaction() as s:
            created = s.one("""INSERT INTO acme_accounts (id, partner_id, tenant_id, name, provider, environment, email,
                                                          directory_url, account_url, eab_kid, sealed_key, status,
                                                          created_by)
                               VALUES (:id, :p, :t, :name, :provider, :env, :email, :dir, :url, :kid, :sealed, 'valid',
                                       :actor)
                               ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *""",
                            id=account_id, p=owner.partner_id, t=owner.tenant_id, name=name, provider=provider,
                            env=environment, email=email, dir=directory_url, url=regr.uri, kid=eab_kid, sealed=sealed,
                            actor=actor)
            if created is None:
                raise ScaiVaultError("conflict", "an ACME account with this name exists", details={"name": name})
            record(s, audit("pki_admin", secret_path=f"pki/acme/accounts/{name}",
                            extra={"acme_account_id": account_id, "provider": provider, "op": "register"}))
        return self.account_view(created)

    def account(self, owner: SecretOwner, account_id: str) -> dict:
        row = self.db.one("SELECT * FROM acme_accounts WHERE id = :id AND tenant_id = :t", id=str(account_id)[:64],
                          t=owner.tenant_id)
        if row is None:
            raise ScaiVaultError("acme_account_not_found", "no ACME account with this id",
                                 details={"account_id": str(account_id)[:64]})
        return row

    def list_accounts(self, owner: SecretOwner) -> list[dict]:
        return [self.account_view(r) for r in self.db.query(
            "SELECT * FROM acme_accounts WHERE tenant_id = :t ORDER BY name", t=owner.tenant_id)]

    # ================================================================== orders
    @staticmethod
    def order_view(row: dict) -> dict:
        return {"id": row["id"], "account_id": row["account_id"], "domains": row["domains"],
                "challenge": row["challenge"], "dns_provider_id": row["dns_provider_id"],
                "secret_path": row["secret_path"], "key_type": row["key_type"], "auto_renew": row["auto_renew"],
                "status": row["status"], "stage": row["stage"], "reason": row["error"],
                "serial_number": row["serial_number"], "not_after": iso(row["not_after"]),
                "renewed_from": row["renewed_from"], "renewed_by": row["renewed_by"], "attempts": row["attempts"],
                "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
                "completed_at": iso(row["completed_at"])}

    def create_order(self, owner: SecretOwner, body: dict, actor: str, audit: AuditFn, *,
                     renewed_from: str | None = None, start: bool = True) -> dict:
        """Record the order (status pending) and start its runner; 202 to the caller."""
        account = self.account(owner, body.get("account_id"))
        domains, challenge = body.get("domains"), body.get("challenge") or "http-01"
        problems: dict[str, str] = {}
        if (not isinstance(domains, list) or not 0 < len(domains) <= MAX_DOMAINS
                or not all(isinstance(d, str) and 0 < len(d) <= 253 for d in domains)):
            problems["domains"] = f"a list of 1-{MAX_DOMAINS} domain names"
        else:
            domains = list(dict.fromkeys(d.strip().lower().rstrip(".") for d in domains))
        if challenge not in CHALLENGES:
            problems["challenge"] = "http-01 or dns-01"
        key_type = body.get("key_type") or "ec256"
        if key_type not in ORDER_KEY_TYPES:
            problems["key_type"] = "one of " + ", ".join(ORDER_KEY_TYPES)
        secret_path = body.get("secret_path")
        if not isinstance(secret_path, str):
            problems["secret_path"] = "where the certificate, key and chain are written (a secret path)"
        if problems:
            raise ValidationFailed(problems)
        validate_path(secret_path)
        provider_id = body.get("dns_provider_id")
        if challenge == "dns-01":
            if not provider_id:
                raise ValidationFailed({"dns_provider_id": "required with dns-01"})
            provider = self.dns.get(owner, provider_id)
            for domain in domains:
                if zone_for(provider["managed_zones"], domain) is None:
                    raise ValidationFailed({"domains": f"{domain} is in none of the DNS provider's managed zones"})
        else:
            if any(d.startswith("*.") for d in domains):
                raise ValidationFailed({"domains": "wildcard names need the dns-01 challenge"})
            provider_id = None
        order_id = "ord_" + pyrandom.token_hex(8)
        with self.db.transaction() as s:
            row = s.one("""INSERT INTO acme_orders (id, partner_id, tenant_id, account_id, domains, challenge,
                                                    dns_provider_id, secret_path, key_type, auto_renew, status, stage,
                                                    renewed_from, created_by)
                           VALUES (:id, :p, :t, :acct, CAST(:domains AS jsonb), :challenge, :dnsp, :path, :kt, :auto,
                                   'pending', 'queued', :renewed_from, :actor) RETURNING *""",
                        id=order_id, p=owner.partner_id, t=owner.tenant_id, acct=account["id"],
                        domains=json.dumps(domains), challenge=challenge, dnsp=provider_id, path=secret_path,
                        kt=key_type, auto=bool(body.get("auto_renew")), renewed_from=renewed_from, actor=actor)
            if renewed_from and not s.one("""UPDATE acme_orders SET renewed_by = :new
                                               WHERE id = :old AND renewed_by IS NULL RETURNING id""",
                                            new=order_id, old=renewed_from):
                raise ScaiVaultError("conflict", "the order was renewed already", details={"order_id": renewed_from})
            record(s, audit("acme_order", secret_path=secret_path,
                            extra={"acme_order_id": order_id, "domains": domains[:20], "challenge": challenge,
                                   **({"renews": renewed_from} if renewed_from else {})}))
        if start:
            self.start(order_id)
        return self.order_view(row)

    def order(self, owner: SecretOwner, order_id: str) -> dict:
        row = self.db.one("SELECT * FROM acme_orders WHERE id = :id AND tenant_id = :t", id=str(order_id)[:64],
                          t=owner.tenant_id)
        if row is None:
            raise ScaiVaultError("acme_order_not_found", "no ACME order with this id",
                                 details={"order_id": str(order_id)[:64]})
        return row

    def list_orders(self, owner: SecretOwner, limit: int, cursor: str | None, visible: Callable[[str], bool]) -> dict:
        after = decode_cursor(cursor) or ""
        rows = self.db.query("""SELECT * FROM acme_orders WHERE tenant_id = :t AND id > :after ORDER BY id LIMIT :n""",
                             t=owner.tenant_id, after=after, n=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"orders": [self.order_view(r) for r in rows if visible(r["secret_path"])],
                "cursor": encode_cursor(rows[-1]["id"]) if more and rows else None, "has_more": more}

    def http_challenge(self, token: str) -> str | None:
        row = self.db.one("SELECT key_authorization FROM acme_http_challenges WHERE token = :t AND expires_at > now()",
                          t=str(token)[:256])
        return row["key_authorization"] if row else None

    # ================================================================== runners
    def start(self, order_id: str) -> None:
        with self._lock:
            running = self._threads.get(order_id)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(target=self.run, args=(order_id,), name=f"acme-{order_id}", daemon=True)
            self._threads[order_id] = thread
        thread.start()

    def wait(self, order_id: str, timeout: float) -> None:
        thread = self._threads.get(order_id)
        if thread is not None:
            thread.join(timeout)

    def _claim(self, order_id: str) -> dict | None:
        return self.db.one("""UPDATE acme_orders SET runner = :me, heartbeat_at = now(), attempts = attempts + 1,
                                     updated_at = now()
                               WHERE id = :id AND status IN ('pending', 'processing')
                                 AND (runner IS NULL OR heartbeat_at < now() - CAST(:stale AS interval))
                              RETURNING *""", id=order_id, me=self.runner_id,
                           stale=f"{int(STALE_AFTER.total_seconds())} seconds")

    def _beat(self, order_id: str, *, status: str | None = None, stage: str | None = None) -> None:
        updated = self.db.one("""UPDATE acme_orders SET heartbeat_at = now(), updated_at = now(),
                                        status = COALESCE(:status, status), stage = COALESCE(:stage, stage)
                                  WHERE id = :id AND runner = :me RETURNING id""",
                              id=order_id, me=self.runner_id, status=status, stage=stage)
        if updated is None:
            raise AcmeFailure("the order was taken over by another runner")

    def _finish(self, order_id: str, status: str, **fields: Any) -> None:
        self.db.execute("""UPDATE acme_orders SET status = :status, stage = :stage, error = :error,
                                  serial_number = COALESCE(:serial, serial_number), not_before = COALESCE(:nb, not_before),
                                  not_after = COALESCE(:na, not_after), order_url = COALESCE(:url, order_url),
                                  runner = NULL, heartbeat_at = NULL, updated_at = now(), completed_at = now()
                            WHERE id = :id AND runner = :me""",
                        id=order_id, me=self.runner_id, status=status, stage=fields.get("stage", status),
                        error=fields.get("error"), serial=fields.get("serial"), nb=fields.get("not_before"),
                        na=fields.get("not_after"), url=fields.get("order_url"))

    def run(self, order_id: str) -> str | None:
        """Work one order to valid or invalid, unless another runner holds it."""
        row = self._claim(order_id)
        if row is None:
            return None
        audit = system_audit(row, "system:acme")
        if row["attempts"] > MAX_ATTEMPTS:
            self._finish(order_id, "invalid", error=f"gave up after {MAX_ATTEMPTS} attempts")
            return "invalid"
        cleanup: list[Callable[[], None]] = []
        try:
            result = self._process(row, cleanup)
        except Exception as exc:
            reason = _describe(exc)
            log.warning("ACME order failed", extra={"order_id": order_id, "error": type(exc).__name__})
            self._undo(order_id, cleanup)     # before the outcome is visible: a finished order left nothing behind
            self._finish(order_id, "invalid", error=reason)
            self._count(row, "invalid")
            self._audit(row, audit, success=False, extra={"acme_order_id": order_id, "reason": reason})
            return "invalid"
        self._undo(order_id, cleanup)
        self._finish(order_id, "valid", stage="issued", serial=result["serial"], not_before=result["not_before"],
                     not_after=result["not_after"], order_url=result["order_url"])
        self._count(row, "valid")
        event = "certificate.renewed" if row["renewed_from"] else "certificate.issued"
        self._audit(row, audit, extra={"acme_order_id": order_id, "serial_number": result["serial"], "event": event})
        return "valid"

    @staticmethod
    def _undo(order_id: str, cleanup: list[Callable[[], None]]) -> None:
        """Remove the order's challenge records (TXT records, http-01 tokens)."""
        for undo in cleanup:
            try:
                undo()
            except Exception as exc:   # logged: a leftover TXT record is harmless but untidy
                log.warning("ACME cleanup failed", extra={"order_id": order_id, "error": type(exc).__name__})

    def _count(self, row: dict, status: str) -> None:
        from .. import metrics

        provider = self.db.scalar("SELECT provider FROM acme_accounts WHERE id = :id", id=row["account_id"]) or "?"
        metrics.ACME_ORDERS.labels(provider=provider, status=status).inc()

    def _audit(self, row: dict, audit: AuditFn, *, success: bool = True, extra: dict) -> None:
        try:
            with self.db.transaction() as s:
                record(s, entry := audit("acme_order", secret_path=row["secret_path"], success=success, extra=extra))
                certificate_changed(s, entry)
        except ScaiVaultError:
            log.error("ACME order outcome could not be audited", extra={"order_id": row["id"]})

    def _process(self, row: dict, cleanup: list[Callable[[], None]]) -> dict:
        _, _, crypto_util, _, messages = _acme()
        from acme import challenges

        owner = SecretOwner(row["partner_id"], row["tenant_id"])
        account = self.account(owner, row["account_id"])
        key_pem = self.keyring.open(self._account_ctx(account), bytes(account["sealed_key"]))
        acme_client, net, jwk, _ = self._client(key_pem, account["directory_url"], account["account_url"])
        kind, size = ORDER_KEY_TYPES[row["key_type"]]
        cert_key_pem = px.private_key_pem(px.off_the_event_loop(px.generate_key, kind, size))
        csr = crypto_util.make_csr(cert_key_pem.encode(), row["domains"])
        self._beat(row["id"], stage="ordering")
        orderr = acme_client.new_order(csr)
        wanted = challenges.HTTP01 if row["challenge"] == "http-01" else challenges.DNS01
        answers = []
        provider = provider_row = None
        if row["challenge"] == "dns-01":
            if row["dns_provider_id"] is None:
                raise AcmeFailure("the order's DNS provider was deleted")
            provider_row = self.dns.get(owner, row["dns_provider_id"])
            provider = self.dns.build(provider_row)
        published: list[tuple[str, str, str]] = []      # (zone, fqdn, value)
        for authz in orderr.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue
            challb = next((c for c in authz.body.challenges if isinstance(c.chall, wanted)), None)
            if challb is None:
                raise AcmeFailure(f"the CA offers no {row['challenge']} challenge for {authz.body.identifier.value}")
            response, validation = challb.response_and_validation(net.key)
            domain = ("*." if authz.body.wildcard else "") + authz.body.identifier.value
            if row["challenge"] == "http-01":
                token = challb.chall.encode("token")
                self.db.execute("""INSERT INTO acme_http_challenges (token, key_authorization, order_id, expires_at)
                                   VALUES (:t, :k, :o, now() + interval '1 hour')
                                   ON CONFLICT (token) DO UPDATE SET key_authorization = :k, expires_at = EXCLUDED.expires_at""",
                                t=token, k=validation, o=row["id"])
                cleanup.append(lambda t=token: self.db.execute("DELETE FROM acme_http_challenges WHERE token = :t", t=t))
            else:
                zone = zone_for(provider_row["managed_zones"], domain)
                if zone is None:
                    raise AcmeFailure(f"{domain} is in none of the DNS provider's managed zones")
                fqdn = challenge_name(domain)
                self._beat(row["id"], stage=f"writing TXT {fqdn}")
                provider.add_txt(zone, fqdn, validation, TXT_TTL)
                cleanup.append(lambda z=zone, f=fqdn, v=validation: provider.remove_txt(z, f, v))
                published.append((zone, fqdn, validation))
            answers.append((challb, response))
        if published:
            self._beat(row["id"], stage="waiting for DNS propagation")
            config = provider_row["config"]
            timeout = float(config.get("propagation_timeout", PROPAGATION_TIMEOUT))
            for zone, fqdn, value in published:
                servers = authoritative_servers(provider, config, zone)
                if not servers:
                    raise AcmeFailure(f"no authoritative servers found for {zone} to check propagation")
                if not wait_for_propagation(servers, fqdn, value, timeout=timeout,
                                            heartbeat=lambda: self._beat(row["id"])):
                    raise AcmeFailure(f"the TXT record {fqdn} did not reach the authoritative servers of {zone} "
                                      f"within {int(timeout)} s")
        self._beat(row["id"], status="processing", stage="validating")
        for challb, response in answers:
            acme_client.answer_challenge(challb, response)
        finalized = acme_client.poll_and_finalize(orderr, deadline=datetime.now() + ORDER_TIMEOUT)
        fullchain = finalized.fullchain_pem
        certs = px.split_pems(fullchain)
        if not certs:
            raise AcmeFailure("the CA returned no certificate")
        leaf = px.load_certificate(certs[0])
        self._beat(row["id"], stage="storing")
        self.secrets.write(owner, row["secret_path"],
                           WriteRequest(data={"cert_pem": certs[0], "key_pem": cert_key_pem,
                                              "chain_pem": "".join(certs[1:]), "fullchain_pem": "".join(certs)},
                                        secret_type="certificate",
                                        metadata={"description": "ACME certificate for " + ", ".join(row["domains"][:5]),
                                                  "acme_order_id": row["id"],
                                                  "serial_number": px.serial_hex(leaf.serial_number),
                                                  "not_after": iso(leaf.not_valid_after_utc)}),
                           "system:acme", system_audit(row, "system:acme"))
        return {"serial": px.serial_hex(leaf.serial_number), "not_before": leaf.not_valid_before_utc,
                "not_after": leaf.not_valid_after_utc, "order_url": finalized.uri}

    # ================================================================== schedule
    def resume_stalled(self) -> int:
        """Start runners for open orders nobody works on (an instance stopped mid-order)."""
        rows = self.db.query("""SELECT id FROM acme_orders WHERE status IN ('pending', 'processing')
                                  AND (runner IS NULL OR heartbeat_at < now() - CAST(:stale AS interval))
                                ORDER BY updated_at LIMIT 20""", stale=f"{int(STALE_AFTER.total_seconds())} seconds")
        for row in rows:
            self.start(row["id"])
        return len(rows)

    def renew_due(self, *, now: datetime | None = None) -> int:
        """A new order for every valid auto_renew order past two thirds of its certificate's lifetime."""
        now = now or _now()
        rows = self.db.query("""SELECT * FROM acme_orders WHERE auto_renew AND status = 'valid' AND renewed_by IS NULL
                                   AND not_before + (not_after - not_before) * :share <= :now LIMIT 50""",
                             share=RENEW_AT, now=now)
        started = 0
        for row in rows:
            owner = SecretOwner(row["partner_id"], row["tenant_id"])
            body = {"account_id": row["account_id"], "domains": row["domains"], "challenge": row["challenge"],
                    "dns_provider_id": row["dns_provider_id"], "secret_path": row["secret_path"],
                    "key_type": row["key_type"], "auto_renew": True}
            try:   # the new order and the link to it commit together; a concurrent renewer gets `conflict`
                self.create_order(owner, body, "system:acme-renewal", system_audit(row, "system:acme-renewal"),
                                  renewed_from=row["id"])
                started += 1
            except ScaiVaultError as exc:
                if exc.code != "conflict":
                    log.warning("ACME renewal not started", extra={"order_id": row["id"], "error": exc.code})
        return started
