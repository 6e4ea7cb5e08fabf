"""DNS providers for ACME dns-01: stored per tenant with sealed credentials, built through plugins.

A provider type is a plugin on the `scaivault_dns_providers` hook: {name: factory(config) ->
DnsProvider}, where config is the provider's non-secret `config` merged with its opened
credentials. Propagation is checked here, against the zone's authoritative servers, before an
ACME challenge is answered.
"""
from __future__ import annotations

import json
import logging
import secrets as pyrandom
import time
from typing import Any, Callable, Protocol

from ..audit import AuditEntry, record
from ..crypto import SealContext, register_sealed_column
from ..db import Database
from ..errors import ScaiVaultError, ValidationFailed
from .policies import iso
from .secrets import SecretOwner

log = logging.getLogger("scaivault.dns")

register_sealed_column("dns_providers", "sealed_credentials", key_column="id")

CREDENTIALS_KIND = "dns_credentials"
MAX_ZONES = 100
AuditFn = Callable[..., AuditEntry]


class DnsProviderError(Exception):
    """A provider refused or failed; the message names no credential."""


class DnsProvider(Protocol):
    def verify(self, zones: list[str]) -> None:
        """Raise DnsProviderError unless the credentials can manage these zones."""

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> Any:
        """Add one TXT value at fqdn (keeping others); returns a change token or None."""

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        """Remove that TXT value (a missing one is not an error)."""

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        """(address, port) of the zone's authoritative servers, or [] to look up its NS records."""


def new_provider_id() -> str:
    return "dnsp_" + pyrandom.token_hex(8)


def zone_for(managed_zones: list[str], domain: str) -> str | None:
    """The most specific managed zone that contains `domain` (a leading `*.` is ignored on both sides)."""
    base = domain[2:] if domain.startswith("*.") else domain
    best = None
    for zone in managed_zones:
        z = zone[2:] if zone.startswith("*.") else zone
        if (base == z or base.endswith("." + z)) and (best is None or len(z) > len(best)):
            best = z
    return best


def challenge_name(domain: str) -> str:
    base = domain[2:] if domain.startswith("*.") else domain
    return f"_acme-challenge.{base}"


def resolve_name_servers(names: list[str], limit: int = 4) -> list[tuple[str, int]]:
    """(address, 53) of the name servers that resolve; names that do not are left out."""
    import socket

    servers = []
    for name in names[:limit]:
        try:
            servers.append((socket.gethostbyname(name.rstrip(".")), 53))
        except OSError:
            continue
    return servers


def _parse_server(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":") if ":" in str(text) and not str(text).endswith("]") else (text, "", "53")
    return (host or str(text)).strip("[]"), int(port or 53)


class DnsProviderStore:
    """CRUD of a tenant's DNS providers and building a live provider from a stored one."""

    def __init__(self, db: Database, keyring, registry: Callable[[], dict]):
        self.db = db
        self.keyring = keyring
        self.registry = registry      # () -> {provider_type: Registration}

    def _ctx(self, row: dict) -> SealContext:
        return SealContext(row["partner_id"], row["tenant_id"], CREDENTIALS_KIND, row["id"], 0)

    @staticmethod
    def view(row: dict) -> dict:
        return {"id": row["id"], "name": row["name"], "provider_type": row["provider_type"],
                "managed_zones": row["managed_zones"], "config": row["config"], "is_active": row["is_active"],
                "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"])}

    def build(self, row: dict) -> DnsProvider:
        registration = self.registry().get(row["provider_type"])
        if registration is None:
            raise ScaiVaultError("invalid_config", f"no DNS provider plugin {row['provider_type']!r} is installed")
        credentials = json.loads(self.keyring.open(self._ctx(row), bytes(row["sealed_credentials"])))
        return registration.factory({**row["config"], **credentials})

    def create(self, owner: SecretOwner, body: dict, actor: str, audit: AuditFn) -> dict:
        name, provider_type = body.get("name"), body.get("provider_type")
        zones = body.get("managed_zones")
        problems = {}
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            problems["name"] = "1-64 characters"
        installed = self.registry()
        if provider_type not in installed:
            problems["provider_type"] = "one of the installed DNS providers: " + ", ".join(sorted(installed))
        if (not isinstance(zones, list) or not 0 < len(zones) <= MAX_ZONES
                or not all(isinstance(z, str) and 0 < len(z) <= 253 for z in zones)):
            problems["managed_zones"] = f"a list of 1-{MAX_ZONES} zone names"
        credentials, config = body.get("credentials") or {}, body.get("config") or {}
        if not isinstance(credentials, dict) or not isinstance(config, dict):
            problems["credentials"] = "an object"
        if problems:
            raise ValidationFailed(problems)
        row = {"id": new_provider_id(), "partner_id": owner.partner_id, "tenant_id": owner.tenant_id,
               "provider_type": provider_type, "config": config}
        sealed = self.keyring.seal(self._ctx(row), json.dumps(credentials).encode())
        row["sealed_credentials"] = sealed
        try:
            provider = installed[provider_type].factory({**config, **credentials})
            if body.get("verify"):
                provider.verify(sorted({z.lower().rstrip(".").removeprefix("*.") for z in zones}))
        except DnsProviderError as exc:
            raise ScaiVaultError("invalid_config", f"the DNS provider refused: {exc}",
                                 details={"provider_type": provider_type}) from None
        except KeyError as exc:
            raise ScaiVaultError("invalid_config", f"the {provider_type} DNS provider needs the setting {exc.args[0]!s}"[:300],
                                 details={"provider_type": provider_type, "missing": str(exc.args[0])[:64]}) from None
        except (ValueError, TypeError) as exc:
            raise ScaiVaultError("invalid_config", f"bad {provider_type} DNS provider settings: {exc}"[:300],
                                 details={"provider_type": provider_type}) from None
        with self.db.transaction() as s:
            created = s.one("""INSERT INTO dns_providers (id, partner_id, tenant_id, name, provider_type, managed_zones,
                                                          config, sealed_credentials, created_by)
                               VALUES (:id, :p, :t, :name, :type, CAST(:zones AS jsonb), CAST(:config AS jsonb),
                                       :sealed, :actor)
                               ON CONFLICT (tenant_id, name) DO NOTHING RETURNING *""",
                            id=row["id"], p=owner.partner_id, t=owner.tenant_id, name=name, type=provider_type,
                            zones=json.dumps([z.lower().rstrip(".") for z in zones]), config=json.dumps(config),
                            sealed=sealed, actor=actor)
            if created is None:
                raise ScaiVaultError("conflict", "a DNS provider with this name exists", details={"name": name})
            record(s, audit("pki_admin", secret_path=f"dns/providers/{name}",
                            extra={"dns_provider_id": row["id"], "op": "create", "provider_type": provider_type}))
        return self.view(created)

    def get(self, owner: SecretOwner, provider_id: str) -> dict:
        row = self.db.one("SELECT * FROM dns_providers WHERE id = :id AND tenant_id = :t", id=str(provider_id)[:64],
                          t=owner.tenant_id)
        if row is None:
            raise ScaiVaultError("dns_provider_not_found", "no DNS provider with this id",
                                 details={"dns_provider_id": str(provider_id)[:64]})
        return row

    def list(self, owner: SecretOwner) -> list[dict]:
        return [self.view(r) for r in self.db.query("SELECT * FROM dns_providers WHERE tenant_id = :t ORDER BY name",
                                                    t=owner.tenant_id)]

    def delete(self, owner: SecretOwner, provider_id: str, audit: AuditFn) -> None:
        row = self.get(owner, provider_id)
        with self.db.transaction() as s:
            in_use = s.one("""SELECT 1 AS x FROM acme_orders WHERE dns_provider_id = :id
                               AND (status IN ('pending', 'processing') OR (auto_renew AND renewed_by IS NULL))""",
                           id=row["id"])
            if in_use:
                raise ScaiVaultError("conflict", "open or auto-renewing ACME orders use this DNS provider",
                                     details={"dns_provider_id": row["id"]})
            s.execute("UPDATE acme_orders SET dns_provider_id = NULL WHERE dns_provider_id = :id", id=row["id"])
            s.execute("DELETE FROM dns_providers WHERE id = :id", id=row["id"])
            record(s, audit("pki_admin", secret_path=f"dns/providers/{row['name']}",
                            extra={"dns_provider_id": row["id"], "op": "delete"}))


def txt_visible(servers: list[tuple[str, int]], fqdn: str, value: str, timeout: float = 2.0) -> bool:
    """True when every authoritative server answers `value` among fqdn's TXT records."""
    import dns.message
    import dns.query
    import dns.rdatatype

    if not servers:
        return False
    for host, port in servers:
        query = dns.message.make_query(fqdn, dns.rdatatype.TXT)
        try:
            answer = dns.query.udp(query, host, port=port, timeout=timeout)
        except Exception:
            return False
        values = {b"".join(r.strings).decode() for rrset in answer.answer for r in rrset
                  if rrset.rdtype == dns.rdatatype.TXT}
        if value not in values:
            return False
    return True


def authoritative_servers(provider: DnsProvider, config: dict, zone: str) -> list[tuple[str, int]]:
    """Configured `nameservers` (host:port), else the provider's own, else the zone's NS records resolved."""
    if config.get("nameservers"):
        return [_parse_server(s) for s in config["nameservers"]][:8]
    servers = provider.authoritative_servers(zone)
    if servers:
        return servers
    import dns.resolver

    found: list[tuple[str, int]] = []
    try:
        for ns in dns.resolver.resolve(zone, "NS", lifetime=5):
            for addr in dns.resolver.resolve(str(ns.target), "A", lifetime=5):
                found.append((addr.address, 53))
    except Exception as exc:
        log.warning("no authoritative servers found", extra={"zone": zone, "error": type(exc).__name__})
    return found[:8]


def wait_for_propagation(servers: list[tuple[str, int]], fqdn: str, value: str, *, timeout: float,
                         interval: float = 1.0, heartbeat: Callable[[], None] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if txt_visible(servers, fqdn, value):
            return True
        if time.monotonic() > deadline:
            return False
        if heartbeat:
            heartbeat()
        time.sleep(interval)
