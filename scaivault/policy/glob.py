"""Path-pattern globs of spec/20 section 5.4, compiled once into a matcher.

Grammar (decided in docs/decisions.md, "Secrets and policies"):
- segments separated by '/', same alphabet as paths plus '*' and '?'; anchored at both ends;
- `*` inside a segment matches any run of characters of that segment (never '/');
  a segment that is only `*` matches exactly one whole segment;
- `?` matches exactly one character, never '/';
- `**` must be a whole segment and matches whole segments: zero or more between two
  segments (`a/**/b` matches `a/b`), one or more at the start (`**/ssl/*` does not match
  `ssl/cert`, the documented vector) and at the end (`app/**` is everything *below* app,
  not `app` itself, like Vault's `app/*`); `**` alone matches every path;
- no escapes: the path alphabet has no metacharacters to escape.

Matching never backtracks (design.md invariant 12, issue 9 F5): a pattern is split on `**`
into runs of segment patterns, and each segment pattern becomes the cheapest exact test
(equality, prefix and suffix, fixed width, or chunks between `*`s placed leftmost-first); runs
are placed leftmost-first too, which is exact for wildcard gaps, so a match costs
O(path x pattern) at worst and a policy author cannot stall a worker. At most MAX_WILDCARDS
wildcards per pattern. The regular expression is only built for PostgreSQL (listings), whose
engine does not backtrack.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ScaiVaultError
from .paths import MAX_PATH_DEPTH, MAX_PATH_LENGTH

_SEGMENT_RE = re.compile(r"^[a-z0-9_*?-]+$")
_WILDCARD_RE = re.compile(r"\*\*|[*?]")
MAX_WILDCARDS = 16     # `*`, `?` and `**` each count one


def _invalid(pattern: object, problem: str) -> ScaiVaultError:
    shown = pattern if isinstance(pattern, str) and len(pattern) <= MAX_PATH_LENGTH else None
    return ScaiVaultError("invalid_glob", f"invalid path pattern: {problem}",
                          details={"path_pattern": shown} if shown else None)


def _segment_regex(segment: str) -> str:
    """The segment as a regular expression, for PostgreSQL (listings filter rows in SQL)."""
    if segment == "*":
        return "[^/]+"
    out = []
    for ch in segment:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


class _Chunk:
    """A piece of a segment pattern between `*`s: literal text, or text with `?` (a fixed-width regex)."""

    __slots__ = ("text", "width", "_re")

    def __init__(self, text: str):
        self.text = text
        self.width = len(text)
        # no quantifier in it, so the regex engine tries each start once: no backtracking
        self._re = re.compile("".join("." if c == "?" else re.escape(c) for c in text), re.DOTALL) \
            if "?" in text else None

    def at(self, s: str, pos: int) -> bool:
        if self._re is None:
            return s.startswith(self.text, pos)
        return pos + self.width <= len(s) and self._re.match(s, pos) is not None

    def find(self, s: str, start: int, end: int) -> int:
        """Leftmost position p, start <= p and p + width <= end, where the chunk matches; -1 if none."""
        if self._re is None:
            return s.find(self.text, start, end)
        m = self._re.search(s, start, end)
        return m.start() if m else -1


class _SegmentMatcher:
    """One segment pattern (`db-*`, `a?c`, `*`); `matches(segment)` places chunks leftmost-first."""

    __slots__ = ("_chunks", "_star", "_nonempty")

    def __init__(self, pattern: str):
        pieces = pattern.split("*")
        self._star = len(pieces) > 1
        self._chunks = [_Chunk(p) for p in pieces]
        self._nonempty = pattern == "*"          # a lone `*` is exactly one (non-empty) segment

    def matches(self, s: str) -> bool:
        chunks = self._chunks
        if not self._star:
            return len(s) == chunks[0].width and chunks[0].at(s, 0)
        if self._nonempty:
            return bool(s)
        first, last = chunks[0], chunks[-1]
        if len(s) < first.width + last.width or not first.at(s, 0) or not last.at(s, len(s) - last.width):
            return False
        pos, end = first.width, len(s) - last.width
        for chunk in chunks[1:-1]:
            if not chunk.width:
                continue
            found = chunk.find(s, pos, end)
            if found < 0:
                return False
            pos = found + chunk.width
        return True


def _segment_predicate(pattern: str) -> Callable[[str], bool]:
    """The cheapest exact test for one segment pattern: equality, prefix/suffix, fixed width, or chunks."""
    if "*" not in pattern and "?" not in pattern:
        return pattern.__eq__
    if pattern == "*":
        return bool                                 # a lone `*` is exactly one (non-empty) segment
    if "*" not in pattern:                          # `?` only: fixed width, no quantifier to backtrack
        return re.compile("".join("." if c == "?" else re.escape(c) for c in pattern), re.DOTALL).fullmatch  # type: ignore[return-value]
    if pattern.count("*") == 1 and "?" not in pattern:
        prefix, suffix = pattern.split("*")
        least = len(prefix) + len(suffix)
        return lambda s: len(s) >= least and s.startswith(prefix) and s.endswith(suffix)
    return _SegmentMatcher(pattern).matches


def _run_at(run: tuple, segments: list[str], k: int) -> bool:
    for i, matches in enumerate(run):
        if not matches(segments[k + i]):
            return False
    return True


@dataclass(frozen=True)
class PathPattern:
    """A compiled glob: `matches(path)` in microseconds and in bounded time; literal and prefix forms are string tests."""

    text: str
    literal_prefix: str = field(compare=False)     # characters before the first wildcard
    _exact: str | None = field(default=None, compare=False, repr=False)
    _below: str | None = field(default=None, compare=False, repr=False)   # "base/" for `base/**`
    _runs: tuple | None = field(default=None, compare=False, repr=False)  # segment matchers between `**`s
    _sql: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def compile(cls, pattern: object, max_wildcards: int | None = MAX_WILDCARDS) -> "PathPattern":
        """Validate and compile; a bad pattern raises 400 invalid_glob, too many wildcards 422 validation_error.

        `max_wildcards=None` for patterns stored before the limit existed (matching is linear anyway).
        """
        if not isinstance(pattern, str) or not pattern:
            raise _invalid(pattern, "the pattern is empty")
        if len(pattern) > MAX_PATH_LENGTH:
            raise _invalid(pattern, f"longer than {MAX_PATH_LENGTH} characters")
        if pattern.startswith("/") or pattern.endswith("/"):
            raise _invalid(pattern, "must not start or end with '/'")
        segments = pattern.split("/")
        if len(segments) > MAX_PATH_DEPTH:
            raise _invalid(pattern, f"more than {MAX_PATH_DEPTH} segments")
        for i, seg in enumerate(segments):
            if not seg:
                raise _invalid(pattern, "empty segment ('//')")
            if not _SEGMENT_RE.match(seg):
                raise _invalid(pattern, "only a-z, 0-9, '-', '_', '/', '*' and '?' are allowed")
            if "**" in seg and seg != "**":
                raise _invalid(pattern, "'**' must be a whole segment")
            if seg == "**" and i > 0 and segments[i - 1] == "**":
                raise _invalid(pattern, "'**/**' is redundant; use one '**'")
        wildcards = len(_WILDCARD_RE.findall(pattern))
        if max_wildcards is not None and wildcards > max_wildcards:
            message = f"at most {max_wildcards} wildcards ('*', '?', '**') per path pattern, this one has {wildcards}"
            raise ScaiVaultError("validation_error", message, details={"fields": {"path_pattern": message}})

        wild = re.search(r"[*?]", pattern)
        literal_prefix = pattern[: wild.start()] if wild else pattern
        if not wild:
            return cls(pattern, literal_prefix, _exact=pattern)
        if segments[-1] == "**" and len(segments) > 1 and not re.search(r"[*?]", "/".join(segments[:-1])):
            return cls(pattern, literal_prefix, _below="/".join(segments[:-1]) + "/")

        runs: list[list[Callable[[str], bool]]] = [[]]
        for seg in segments:
            if seg == "**":
                runs.append([])
            else:
                runs[-1].append(_segment_predicate(seg))
        return cls(pattern, literal_prefix, _runs=tuple(tuple(run) for run in runs), _sql=_sql_regex(segments))

    @property
    def sql_regex(self) -> str:
        """The same match as a PostgreSQL regular expression (ARE), anchored at both ends."""
        if self._exact is not None:
            return "^" + re.escape(self._exact) + "$"
        if self._below is not None:
            return "^" + re.escape(self._below)
        return self._sql  # type: ignore[return-value]

    def matches(self, path: str) -> bool:
        if self._exact is not None:
            return path == self._exact
        if self._below is not None:
            return path.startswith(self._below)
        if not path.startswith(self.literal_prefix):
            return False                            # most rules fail here, without splitting the path
        runs = self._runs
        xs = path.split("/")
        if len(runs) == 1:                          # no `**`: one segment pattern per segment
            return len(xs) == len(runs[0]) and _run_at(runs[0], xs, 0)
        return _match_runs(runs, xs)  # type: ignore[arg-type]

    def covers_subtree(self, folder: str) -> bool:
        """True when every path below `folder` (ending in '/') matches, so no row check is needed."""
        if self.text == "**":
            return True
        return self._below is not None and folder.startswith(self._below)

    def could_match_below(self, folder: str) -> bool:
        """False only when no path below `folder` can match (a cheap literal-prefix test)."""
        lp = self.literal_prefix
        return folder.startswith(lp) or lp.startswith(folder)


def _match_runs(runs: tuple, xs: list[str]) -> bool:
    """Runs of segment patterns separated by `**`, placed leftmost-first (exact for `*`-like gaps).

    The first run sits at the start and the last at the end; a leading or trailing `**` covers
    at least one segment, an inner one zero or more.
    """
    n = len(xs)
    if len(runs) == 1:
        run = runs[0]
        return len(run) == n and _run_at(run, xs, 0)
    first, middle, last = runs[0], runs[1:-1], runs[-1]
    if not first and not last and not middle:
        return n >= 1                                    # `**` alone
    if first:
        if len(first) > n or not _run_at(first, xs, 0):
            return False
        pos = len(first)
    else:
        pos = 1
    end = n - len(last) if last else n - 1              # where the middle runs must end by
    if end < pos:
        return False
    for run in middle:
        k = next((k for k in range(pos, end - len(run) + 1) if _run_at(run, xs, k)), None)
        if k is None:
            return False
        pos = k + len(run)
    return _run_at(last, xs, end) if last else True


def _sql_regex(segments: list[str]) -> str:
    n = len(segments)
    parts: list[str] = []
    for i, seg in enumerate(segments):
        if seg == "**":
            if n == 1:
                parts.append(".+")
            elif i == 0:
                parts.append("(?:[^/]+/)+")
            elif i == n - 1:
                parts.append("/.+")
            else:
                parts.append("/(?:[^/]+/)*")
        else:
            sep = "" if i == 0 or segments[i - 1] == "**" else "/"
            parts.append(sep + _segment_regex(seg))
    return "^" + "".join(parts) + "$"
