"""One pagination for every list (issue 16). In a listing (service or view, no Flask needed):
1. `size = page_limit(args.get("limit"))`: default 100, 1..1000, else 400 invalid_request.
2. `after = decode_cursor(args.get("cursor"), "policies")`: None on the first page; 400 invalid_cursor when tampered with.
3. fetch `size + 1` rows after `after` in a stable keyset order (after: any JSON value, e.g. the last id or [ts, id]).
4. `return page("policies", items, more, last_key)` -> {"policies": [...], "cursor": str|None, "has_more": bool}.
5. Every timestamp: `timestamp(dt)` -> "2026-12-01T10:00:00.123456Z" (RFC 3339, microseconds, Z).

Cursors are base64url(JSON) + "." + a truncated HMAC-SHA256 under a key derived from sealed material (the
master key of the reserved pseudo-partner `~system`, wrapped by the KMS root in partner_keys): the same on
every instance, it survives restarts and is never stored in plaintext. The app installs the key source per
request (`use_key_source`); code outside requests (jobs, CLI) uses the last one installed.
"""
from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any, Callable

from . import inputs
from .errors import ScaiVaultError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_LENGTH = 1024          # ours are far shorter; longer ones are refused before any work
SYSTEM_KEY_OWNER = "~system"      # pseudo-partner whose master key signs cursors (never a real partner id)
_MAC_BYTES = 16

KeySource = Callable[[], bytes]
_current: contextvars.ContextVar[KeySource | None] = contextvars.ContextVar("scaivault_cursor_key", default=None)
_fallback: list[KeySource] = []


def key_from_keyring(get_keyring: Callable[[], Any]) -> KeySource:
    """A lazy, cached cursor key derived from the `~system` master key of the keyring (one KMS unwrap per process)."""
    cached: list[bytes] = []

    def source() -> bytes:
        if not cached:
            aead = get_keyring().partner_aead(SYSTEM_KEY_OWNER)
            # AES-GCM of a fixed message under a fixed nonce is a PRF of the key: a derived MAC key
            cached.append(hashlib.sha256(aead.encrypt(b"\0" * 12, b"scaivault/cursor-mac/v1", None)).digest())
        return cached[0]

    return source


def use_key_source(source: KeySource) -> None:
    """Install the key source for this request (and as the fallback outside requests)."""
    _current.set(source)
    if not _fallback or _fallback[-1] is not source:
        _fallback[:] = [source]


def _key() -> bytes:
    source = _current.get() or (_fallback[-1] if _fallback else None)
    if source is None:
        raise ScaiVaultError("service_unavailable", "cursor signing is not configured")
    return source()


def _mac(kind: str, body: bytes) -> bytes:
    return hmac.new(_key(), kind.encode() + b"\0" + body, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(after: Any, kind: str = "") -> str:
    """An opaque, signed cursor for the keyset position `after` of the listing `kind`."""
    body = json.dumps(after, separators=(",", ":")).encode()
    return f"{_b64(body)}.{_b64(_mac(kind, body))}"


def decode_cursor(cursor: str | None, kind: str = "") -> Any:
    """The position a cursor carries (None for no cursor); 400 invalid_cursor for anything we did not sign."""
    if cursor is None or cursor == "":
        return None
    bad = ScaiVaultError("invalid_cursor", "the cursor is malformed, was altered or belongs to another listing; "
                                           "start again without it")
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1 or "\x00" in cursor:
        raise bad
    body_text, mac_text = cursor.split(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise bad from None
    if not hmac.compare_digest(mac, _mac(kind, body)):
        raise bad
    try:
        position = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if inputs.json_text_problem(position) is not None:     # issue 9 part B: nothing unstorable reaches SQL
        raise bad
    return position


def page_limit(limit: Any, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """The page size asked for: `default` when absent, 400 invalid_request outside 1..maximum."""
    if limit is None or limit == "":
        return default
    if isinstance(limit, int) and not isinstance(limit, bool):
        limit = str(limit)
    return inputs.parse_int(limit, "limit", low=1, high=maximum)


def page(key: str, items: list, has_more: bool, last: Any = None, kind: str | None = None,
         **extra: Any) -> dict[str, Any]:
    """The documented envelope: {key: items, "cursor": next or None, "has_more": bool, **extra}."""
    cursor = encode_cursor(last, key if kind is None else kind) if has_more else None
    return {key: items, "cursor": cursor, "has_more": bool(has_more), **extra}


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds and `Z` (naive values are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    elif value.utcoffset():
        value = value.astimezone(timezone.utc)
    if value.year < 1000:       # isoformat pads the year to four digits; strftime's %Y may not
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # what strftime("%Y-%m-%dT%H:%M:%S.%fZ") gives, at a third of its cost (a few per secret read)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def paginate(key: str, items: list[dict], limit: Any, cursor: str | None,
             sort_key: Callable[[dict], str] = lambda item: str(item.get("id") or item.get("name") or ""),
             **extra: Any) -> dict[str, Any]:
    """The same envelope over a small, fully read collection (CAs, roles, engines, tokens...), keyset by `sort_key`."""
    size = page_limit(limit)
    after = decode_cursor(cursor, key)
    if after is not None and not isinstance(after, str):
        raise ScaiVaultError("invalid_cursor", "the cursor belongs to another listing; start again without it")
    ordered = sorted(items, key=sort_key)
    if after is not None:
        ordered = [item for item in ordered if sort_key(item) > after]
    chunk = ordered[:size]
    more = len(ordered) > size
    return page(key, chunk, more, sort_key(chunk[-1]) if chunk else None, **extra)
