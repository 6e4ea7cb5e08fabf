"""Webhook signatures (spec/30 5.4): `sha256=` + hex HMAC-SHA256 of "<timestamp>.<raw body>"."""
from __future__ import annotations

import hashlib
import hmac


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    digest = hmac.new(key, str(int(timestamp)).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def verify(secrets: list[str | bytes], timestamp: int, body: bytes, header: str, now: float,
           tolerance: int = 300) -> bool:
    """The receiver's check (used by tests and documented for receivers): constant time, any of `secrets`."""
    if abs(now - int(timestamp)) > tolerance:
        return False
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(signature(secret, timestamp, body).encode(), header.encode())
    return ok
