"""The caller's address behind load balancers: X-Forwarded-For, believed only from TRUSTED_PROXIES.

Policies with IP conditions and the audit log's source_ip read `request.remote_addr`; this
WSGI middleware makes that the real client. Like Vault's x_forwarded_for_authorized_addrs, a
header from any other peer is ignored, so a client cannot choose its own address.
"""
from __future__ import annotations

import ipaddress


class TrustedProxyMiddleware:
    """Rewrites REMOTE_ADDR to the nearest untrusted hop of X-Forwarded-For."""

    def __init__(self, wsgi_app, trusted: tuple):
        self.wsgi_app = wsgi_app
        self.trusted = trusted

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def client_address(self, environ) -> str | None:
        peer = environ.get("REMOTE_ADDR", "")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if not forwarded or not self._is_trusted(peer):
            return None
        # walk from the nearest hop outwards; the first address that is not one of our proxies
        # is the client (anything further left was written by that client and is not evidence)
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop.strip("[]")))
                except ValueError:
                    return None          # garbage in the header: keep the proxy's address
        return hops[0] if hops else None

    def __call__(self, environ, start_response):
        if self.trusted:
            client = self.client_address(environ)
            if client:
                environ["scaivault.proxy_addr"] = environ.get("REMOTE_ADDR")
                environ["REMOTE_ADDR"] = client
        return self.wsgi_app(environ, start_response)
