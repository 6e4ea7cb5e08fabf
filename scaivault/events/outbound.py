"""Outbound webhook calls: URL rules and one bounded POST to a checked address.

Only `https://` (plus `http://` with WEBHOOK_ALLOW_HTTP) to public addresses (plus the
WEBHOOK_ALLOWED_NETWORKS CIDRs). The host is resolved at delivery time, every resolved
address is checked, and the connection goes to the checked address (the name is kept for
TLS verification and the Host header), so DNS cannot swap in a private address after the
check. Redirects are never followed; connect, each read and the whole call are time-bounded,
and at most RESPONSE_LIMIT bytes of the answer are read.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ScaiVaultError

RESPONSE_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 3.0
RESOLVE_TIMEOUT = 3.0
MAX_URL = 2048


class RefusedDestination(Exception):
    """The URL or its resolved address is not an allowed webhook destination."""


class Unresolvable(RefusedDestination):
    """The host name has no address now (or the resolver did not answer in time)."""


@dataclass(frozen=True)
class Outcome:
    status: int | None
    duration_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _address_allowed(ip: ipaddress._BaseAddress, allowed_networks: tuple) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed_networks if net.version == ip.version):
        return True
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT))


_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


def check_url(url: str, settings) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL; RefusedDestination with the reason otherwise."""
    if not isinstance(url, str) or len(url) > MAX_URL or any(c in url for c in "\r\n\t \x00"):
        raise RefusedDestination("the URL is malformed or longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedDestination("the URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and settings.webhook_allow_http):
        raise RefusedDestination("webhook URLs must use https://")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise RefusedDestination("the URL needs a host and must not carry credentials")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def resolve_checked(host: str, port: int, settings) -> list[str]:
    """Every address of `host`, each checked; RefusedDestination if any is not allowed."""
    try:
        literal = ipaddress.ip_address(host)
        addresses = [str(literal)]
    except ValueError:
        try:
            # bounded: a resolver that never answers costs this call RESOLVE_TIMEOUT, not the worker
            infos = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(RESOLVE_TIMEOUT)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unresolvable(f"the host does not resolve ({type(exc).__name__})") from None
        except FutureTimeout:
            raise Unresolvable("the host did not resolve in time") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        if not _address_allowed(ipaddress.ip_address(address.split("%")[0]), settings.webhook_allowed_networks):
            raise RefusedDestination("the URL resolves to a private, loopback or link-local address")
    if not addresses:
        raise RefusedDestination("the host has no address")
    return addresses


def validate_webhook_url(url: str, settings) -> None:
    """At creation: 400 invalid_webhook_url for a refused scheme or a refused (resolvable) destination."""
    try:
        _, host, port = check_url(url, settings)
        try:
            resolve_checked(host, port, settings)
        except Unresolvable:   # a name that does not resolve yet is checked at delivery
            pass
    except RefusedDestination as exc:
        raise ScaiVaultError("invalid_webhook_url", str(exc), details={"field": "url"}) from None


def post(url: str, body: bytes, headers: dict[str, str], settings, timeout: float) -> Outcome:
    """One POST of `body` to `url` under the rules above; never raises for network failures."""
    import urllib3

    started = time.monotonic()

    def done(status: int | None, error: str | None) -> Outcome:
        return Outcome(status, int((time.monotonic() - started) * 1000), error)

    try:
        scheme, host, port = check_url(url, settings)
        address = resolve_checked(host, port, settings)[0]
    except RefusedDestination as exc:
        return done(None, f"refused_destination: {exc}")
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" + (f":{parts.port}" if parts.port else "")
    pool_kwargs = dict(timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT, timeout), read=timeout),
                       retries=False, maxsize=1)
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host,
                                           cert_reqs="CERT_REQUIRED", **pool_kwargs)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **pool_kwargs)
    deadline = started + timeout + CONNECT_TIMEOUT
    try:
        response = pool.urlopen("POST", target, body=body, headers={**headers, "Host": host_header},
                                redirect=False, preload_content=False, assert_same_host=False, retries=False)
        received = 0
        while received < RESPONSE_LIMIT and time.monotonic() < deadline:
            chunk = response.read(4096)
            if not chunk:
                break
            received += len(chunk)
        response.release_conn()
        return done(response.status, None if 200 <= response.status < 300 else f"http_{response.status}")
    except Exception as exc:    # timeouts, refused connections, TLS failures: a failed attempt
        return done(None, type(exc).__name__)
    finally:
        pool.close()
