"""DNS provider `rfc2136`: TXT records through DNS dynamic update (RFC 2136) signed with TSIG.

Settings (credentials and config are merged): `server` (address of the primary, required),
`port` (53), `tsig_key_name`, `tsig_secret` (base64), `tsig_algorithm` (hmac-sha256),
`timeout` seconds (10). Propagation is checked against `server` unless `nameservers` is set.
"""
from __future__ import annotations

from typing import Any

from scaivault.plugins import hookimpl
from scaivault.services.dns_providers import DnsProviderError

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")


class Rfc2136Provider:
    def __init__(self, config: dict[str, Any]):
        try:
            import dns.tsigkeyring
        except ImportError:  # pragma: no cover - dnspython is in the acme extra
            raise DnsProviderError("dnspython is missing: pip install 'scaivault[acme]'") from None
        self.server = str(config["server"])
        self.port = int(config.get("port", 53))
        self.timeout = float(config.get("timeout", 10))
        algorithm = str(config.get("tsig_algorithm", "hmac-sha256")).lower()
        if algorithm not in ALGORITHMS:
            raise ValueError(f"tsig_algorithm must be one of {', '.join(ALGORITHMS)}")
        self.keyring = None
        self.key_name = config.get("tsig_key_name")
        if self.key_name:
            self.keyring = dns.tsigkeyring.from_text({self.key_name: str(config["tsig_secret"])})
        self.algorithm = algorithm

    def _update(self, zone: str):
        import dns.update

        if self.keyring is not None:
            return dns.update.UpdateMessage(zone, keyring=self.keyring, keyname=self.key_name,
                                            keyalgorithm=self.algorithm)
        return dns.update.UpdateMessage(zone)

    def _send(self, message) -> None:
        import dns.query
        import dns.rcode

        try:
            response = dns.query.tcp(message, self.server, port=self.port, timeout=self.timeout)
        except Exception as exc:
            raise DnsProviderError(f"dynamic update to {self.server}:{self.port} failed ({type(exc).__name__})") from None
        if response.rcode() != dns.rcode.NOERROR:
            raise DnsProviderError(f"the server answered {dns.rcode.to_text(response.rcode())}")

    def verify(self, zones: list[str]) -> None:
        """A signed no-op update per zone (delete of a name never used) proves the key is accepted."""
        for zone in zones:
            update = self._update(zone)
            update.delete(f"_scaivault-verify.{zone}.", "TXT")
            self._send(update)

    def add_txt(self, zone: str, fqdn: str, value: str, ttl: int) -> None:
        update = self._update(zone)
        update.add(fqdn + ".", ttl, "TXT", f'"{value}"')
        self._send(update)

    def remove_txt(self, zone: str, fqdn: str, value: str) -> None:
        update = self._update(zone)
        update.delete(fqdn + ".", "TXT", f'"{value}"')
        self._send(update)

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        return [(self.server, self.port)]


@hookimpl
def scaivault_dns_providers():
    return {"rfc2136": Rfc2136Provider}
