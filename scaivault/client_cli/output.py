"""How client commands answer: exit codes, human tables or --json, and error lines."""
from __future__ import annotations

import json
from enum import Enum
from typing import Any, Callable, Iterable, Sequence

import click

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_AUTHENTICATION = 2
EXIT_AUTHORIZATION = 3
EXIT_NOT_FOUND = 4
EXIT_VALIDATION = 5


def exit_code_for(exc: Exception) -> int:
    """The documented exit code of an SDK error (spec/50 6.2)."""
    from scaivault_sdk import errors

    if isinstance(exc, errors.AuthenticationError):
        return EXIT_AUTHENTICATION
    if isinstance(exc, errors.ConfigurationError):
        return EXIT_AUTHENTICATION if exc.code == "missing_token" else EXIT_ERROR
    if isinstance(exc, errors.AuthorizationError):
        return EXIT_AUTHORIZATION
    if isinstance(exc, errors.NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, errors.ValidationError):
        return EXIT_VALIDATION
    return EXIT_ERROR


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")(func)


def to_plain(value: Any) -> Any:
    """Pydantic models and lists of them as JSON-ready data."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=False)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_plain(value), indent=2, sort_keys=True, ensure_ascii=False))


def respond(as_json: bool, value: Any, human: str) -> None:
    """The result object as JSON with --json, else the one-line human answer."""
    if as_json:
        print_json(value)
    else:
        click.echo(human)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False) if value else "-"
    if hasattr(value, "value"):        # enums
        return str(value.value)
    return str(value).replace("\n", "\\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "(none)") -> None:
    text = [[cell(v) for v in row] for row in rows]
    if not text:
        click.echo(empty)
        return
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def print_fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """A key/value block (one object)."""
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {cell(value)}")


def fail(message: str, code: int) -> None:
    """Print `scaivault: message` on stderr and exit with `code`."""
    click.echo(f"scaivault: {message}", err=True)
    raise click.exceptions.Exit(code)
