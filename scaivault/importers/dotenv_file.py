"""Source: a `.env` file, parsed by python-dotenv's parser (single and double quotes with escapes,
full-line and trailing comments, `export ` prefixes, multi-line double-quoted values, empty values).
No interpolation: `${X}` is kept as written. Duplicate keys: the last wins, with a warning."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

from .engine import Entry, SourceError, SourceSecret, Version, scaivault_path

EXIT_VALIDATION = 5


@dataclass
class DotenvFile:
    values: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def parse(text: str) -> DotenvFile:
    """The file's variables in order; a line python-dotenv cannot parse is an error (nothing is imported)."""
    try:
        from dotenv.parser import parse_stream
    except ModuleNotFoundError:
        raise SourceError("`import dotenv` needs python-dotenv: pip install 'scaivault[importers]'") from None
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    warnings: list[str] = []
    bad: list[int] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            bad.append(line)
        elif binding.key is None:
            continue                                    # blank line or comment
        elif binding.value is None:
            warnings.append(f"line {line}: {binding.key} has no '=' and was ignored")
        else:
            if binding.key in values:
                warnings.append(f"line {line}: {binding.key} repeats line {lines[binding.key]}; the last one wins")
            values[binding.key] = binding.value
            lines[binding.key] = line
    if bad:
        raise SourceError(f"cannot parse line(s) {', '.join(map(str, bad))} (nothing was imported)", EXIT_VALIDATION)
    return DotenvFile(values, warnings)


def entries(filename: str, text: str, path: str, split: bool) -> tuple[list[Entry], list[str]]:
    """One secret at `path` holding every variable, or with `split` one secret per variable at
    `path/key` (the name lowercased) holding {"value": ...}."""
    parsed = parse(text)
    if not parsed.values:
        raise SourceError(f"{filename} holds no variables", EXIT_VALIDATION)
    name = os.path.basename(filename)
    base = path.strip("/")
    if not split:
        return [_entry(base, f"dotenv:{name}", dict(parsed.values))], parsed.warnings
    return [_entry(f"{base}/{scaivault_path(key)}", f"dotenv:{name}#{key}", {"value": value})
            for key, value in parsed.values.items()], parsed.warnings


def _entry(path: str, origin: str, data: dict[str, str]) -> Entry:
    source = SourceSecret(path=path, origin=origin, current=data, versions=[Version(None, lambda: data)])
    return Entry(path, lambda: source)
