"""Untrusted request text, decided in one place: integers, timestamps, cursors, storable strings.

Every endpoint parses numbers, times and cursors through these functions, and the request
pipeline checks path parameters, query values and JSON bodies with `text_problem` /
`json_text_problem`, so a malformed input is a precise 4xx wherever it is sent, never a 500
from deep inside PostgreSQL or an encoder (issue 9 F13). No Flask here.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator

from .errors import ScaiVaultError

PG_INT_MAX = 2_147_483_647                 # PostgreSQL `integer`
PG_BIGINT_MAX = 9_223_372_036_854_775_807  # PostgreSQL `bigint`
MAX_CURSOR_LENGTH = 4096

_ASCII_INT_RE = re.compile(r"-?[0-9]{1,19}", re.ASCII)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def is_ascii_digits(text: object, max_length: int = 19) -> bool:
    """True for 1..max_length ASCII digits only (str.isdigit() also accepts '²', which int() refuses)."""
    return isinstance(text, str) and 0 < len(text) <= max_length and text.isascii() and text.isdigit()


def parse_int(raw: object, name: str, *, low: int, high: int, code: str = "invalid_request") -> int:
    """`raw` as an integer in low..high (ASCII digits, optional '-'), else `code` naming the parameter."""
    if isinstance(raw, str) and _ASCII_INT_RE.fullmatch(raw):
        value = int(raw)
        if low <= value <= high:
            return value
    message = f"{name} must be an integer between {low} and {high}"
    if code == "validation_error":
        raise ScaiVaultError(code, "request validation failed", details={"fields": {name: message}})
    raise ScaiVaultError(code, message, details={"parameter": name})


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as PostgreSQL text (NUL, lone surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if _SURROGATE_RE.search(value):
        return "contains a lone UTF-16 surrogate, which is not Unicode text"
    return None


def json_text_problem(doc: Any, *, nul_allowed_under: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """(where, problem) for the first key or string of a parsed JSON document that is not storable text.

    Lone surrogates are refused everywhere; NUL is allowed below the top-level members named in
    `nul_allowed_under` (a secret's `data`, which is sealed as bytes, never stored as text).
    """
    stack: list[tuple[str, Any, bool]] = [("body", doc, False)]
    while stack:
        where, value, nul_ok = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem and not (nul_ok and not _SURROGATE_RE.search(value)):
                return where, problem
        elif isinstance(value, dict):
            for key, item in value.items():
                child_ok = nul_ok or (where == "body" and key in nul_allowed_under)
                problem = text_problem(key) if isinstance(key, str) else None
                if problem and not (child_ok and not _SURROGATE_RE.search(key)):
                    return f"{where} key", problem
                stack.append((f"{where}.{key[:64]}" if where != "body" else key[:64], item, child_ok))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item, nul_ok) for i, item in enumerate(value))
    return None


def parse_timestamp(text: object) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime; ValueError for anything else (out of range included)."""
    if isinstance(text, datetime):
        ts = text
    elif isinstance(text, str) and 0 < len(text) <= 64 and text.isascii():
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    else:
        raise ValueError("not an ISO 8601 timestamp")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    try:
        return ts.astimezone(timezone.utc)     # 0001-01-01T00:00:00+14:00 lies before year 1
    except OverflowError:
        raise ValueError("the timestamp is out of range") from None


def _utc(value: datetime) -> datetime:
    return parse_timestamp(value)


# a request-model field: an aware UTC datetime within datetime's range
UtcTimestamp = Annotated[datetime, AfterValidator(_utc)]


def encode_cursor(position: Any) -> str:
    """An opaque page cursor for a JSON-serialisable keyset position."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, message: str = "the cursor is malformed or expired; start again without it") -> Any:
    """The keyset position inside a cursor; 400 invalid_cursor for anything not storable or not JSON."""
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw.decode("utf-8"))
        if json_text_problem(position) is not None:
            raise ValueError
        return position
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ScaiVaultError("invalid_cursor", message) from None
