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
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ScaiVaultError
from .paths import MAX_PATH_DEPTH, MAX_PATH_LENGTH

_SEGMENT_RE = re.compile(r"^[a-z0-9_*?-]+$")


def _invalid(pattern: object, problem: str) -> ScaiVaultError:
    shown = pattern if isinstance(pattern, str) and len(pattern) <= MAX_PATH_LENGTH else None
    return ScaiVaultError("invalid_glob", f"invalid path pattern: {problem}",
                          details={"path_pattern": shown} if shown else None)


def _segment_regex(segment: str) -> str:
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


@dataclass(frozen=True)
class PathPattern:
    """A compiled glob: `matches(path)` in about a microsecond; literal and prefix forms skip regex."""

    text: str
    literal_prefix: str = field(compare=False)     # characters before the first wildcard
    _exact: str | None = field(default=None, compare=False, repr=False)
    _below: str | None = field(default=None, compare=False, repr=False)   # "base/" for `base/**`
    _regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def compile(cls, pattern: object) -> "PathPattern":
        """Validate and compile; a bad pattern raises 400 invalid_glob."""
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

        wild = re.search(r"[*?]", pattern)
        literal_prefix = pattern[: wild.start()] if wild else pattern
        if not wild:
            return cls(pattern, literal_prefix, _exact=pattern)
        if segments[-1] == "**" and len(segments) > 1 and not re.search(r"[*?]", "/".join(segments[:-1])):
            return cls(pattern, literal_prefix, _below="/".join(segments[:-1]) + "/")

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
        return cls(pattern, literal_prefix, _regex=re.compile("".join(parts) + r"\Z"))

    @property
    def sql_regex(self) -> str:
        """The same match as a PostgreSQL regular expression (ARE), anchored at both ends."""
        if self._exact is not None:
            return "^" + re.escape(self._exact) + "$"
        if self._below is not None:
            return "^" + re.escape(self._below)
        return "^" + self._regex.pattern[:-2] + "$"  # type: ignore[union-attr]   (drop the trailing \\Z)

    def matches(self, path: str) -> bool:
        if self._exact is not None:
            return path == self._exact
        if self._below is not None:
            return path.startswith(self._below)
        return self._regex.match(path) is not None  # type: ignore[union-attr]

    def covers_subtree(self, folder: str) -> bool:
        """True when every path below `folder` (ending in '/') matches, so no row check is needed."""
        if self.text == "**":
            return True
        return self._below is not None and folder.startswith(self._below)

    def could_match_below(self, folder: str) -> bool:
        """False only when no path below `folder` can match (a cheap literal-prefix test)."""
        lp = self.literal_prefix
        return folder.startswith(lp) or lp.startswith(folder)
