"""Statement templates: {{name}}, {{password}}, {{expiration}} filled in quoted for the target SQL.

The template is scanned once to learn, for each placeholder, which quotes it stands inside
('...', "..." or `...`). Inside quotes the value is escaped for that quote; outside any
quote it is emitted fully quoted (an identifier for a name on PostgreSQL, a string literal
otherwise). Either way a value can never end its quote and become SQL.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..errors import ScaiVaultError

PLACEHOLDER = re.compile(r"\{\{\s*(name|username|password|expiration)\s*\}\}")
QUOTES = "'\"`"
MAX_STATEMENTS = 50
MAX_STATEMENT_CHARS = 8192


@dataclass(frozen=True)
class Dialect:
    """How one database family quotes: per quote character, the escape of a value inside it."""

    name: str
    inside: dict[str, Callable[[str], str]]          # quote char -> escape of the content
    bare_name: Callable[[str], str]                   # {{name}} outside quotes
    bare_literal: Callable[[str], str]                # {{password}} / {{expiration}} outside quotes
    expiration_format: str

    def render(self, template: str, values: dict[str, str]) -> str:
        """`template` with every placeholder replaced by its value, quoted for its context."""
        out: list[str] = []
        quote: str | None = None
        i = 0
        n = len(template)
        while i < n:
            ch = template[i]
            if ch == "{" and template.startswith("{{", i):
                m = PLACEHOLDER.match(template, i)
                if m:
                    key = "name" if m.group(1) == "username" else m.group(1)
                    value = values[key]
                    if "\x00" in value:
                        raise ScaiVaultError("invalid_request", "a template value contains a NUL character")
                    if quote is None:
                        out.append(self.bare_name(value) if key == "name" else self.bare_literal(value))
                    elif quote in self.inside:
                        out.append(self.inside[quote](value))
                    else:   # a quote this dialect does not treat as a string: never paste raw
                        raise ScaiVaultError("invalid_role", f"a placeholder inside {quote}...{quote} is not supported")
                    i = m.end()
                    continue
            if quote is None:
                if ch in QUOTES:
                    quote = ch
            elif ch == quote:
                if i + 1 < n and template[i + 1] == quote:   # a doubled quote stays inside
                    out.append(ch + ch)
                    i += 2
                    continue
                quote = None
            elif ch == "\\" and quote in self.backslash_quotes and i + 1 < n:
                out.append(template[i:i + 2])
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)

    @property
    def backslash_quotes(self) -> str:
        return "'\"" if self.name == "mysql" else ""


def _double(q: str) -> Callable[[str], str]:
    return lambda v: v.replace(q, q + q)


def _mysql_string(q: str) -> Callable[[str], str]:
    # backslash escapes are on by default in MySQL/MariaDB string literals
    return lambda v: v.replace("\\", "\\\\").replace(q, "\\" + q)


POSTGRES = Dialect(
    name="postgresql",
    # standard_conforming_strings is on (the default since 9.1): a backslash is literal in '...'
    inside={"'": _double("'"), '"': _double('"')},
    bare_name=lambda v: '"' + v.replace('"', '""') + '"',
    bare_literal=lambda v: "'" + v.replace("'", "''") + "'",
    expiration_format="%Y-%m-%d %H:%M:%S+00",
)

MYSQL = Dialect(
    name="mysql",
    inside={"'": _mysql_string("'"), '"': _mysql_string('"'), "`": _double("`")},
    bare_name=lambda v: "'" + _mysql_string("'")(v) + "'",
    bare_literal=lambda v: "'" + _mysql_string("'")(v) + "'",
    expiration_format="%Y-%m-%d %H:%M:%S",
)


def check_statements(field: str, statements: object, *, required: bool) -> list[str]:
    """A list of 1..50 non-empty statement strings (or empty when not required)."""
    if statements is None:
        statements = []
    if not isinstance(statements, list) or not all(isinstance(s, str) and s.strip() for s in statements):
        raise ScaiVaultError("invalid_role", f"{field} must be a list of SQL statements")
    if required and not statements:
        raise ScaiVaultError("invalid_role", f"{field} needs at least one statement")
    if len(statements) > MAX_STATEMENTS or any(len(s) > MAX_STATEMENT_CHARS for s in statements):
        raise ScaiVaultError("invalid_role", f"{field}: at most {MAX_STATEMENTS} statements of {MAX_STATEMENT_CHARS} characters")
    for s in statements:
        if "\x00" in s:
            raise ScaiVaultError("invalid_role", f"{field} contains a NUL character")
    return statements
