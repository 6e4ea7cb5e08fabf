"""The secret-path grammar of spec/20 section 3.2, shared by the secret store and the glob compiler."""
from __future__ import annotations

import re

from ..errors import ScaiVaultError

MAX_PATH_LENGTH = 512
MAX_PATH_DEPTH = 10
SEGMENT_RE = re.compile(r"^[a-z0-9_-]+$")
SYSTEM_PREFIX = "sys/"        # reserved: administrative resources addressed by policies, never secrets
_PATH_RE = re.compile(r"^[a-z0-9_-]+(?:/[a-z0-9_-]+)*$")


def path_problem(path: object) -> str | None:
    """Why `path` is not a valid secret path, or None when it is."""
    if not isinstance(path, str) or not path:
        return "the path is empty"
    if len(path) > MAX_PATH_LENGTH:
        return f"the path is longer than {MAX_PATH_LENGTH} characters"
    if _PATH_RE.match(path):
        depth = path.count("/") + 1
        return None if depth <= MAX_PATH_DEPTH else f"the path has more than {MAX_PATH_DEPTH} segments"
    if path.startswith("/") or path.endswith("/"):
        return "the path must not start or end with '/'"
    if "//" in path:
        return "the path must not contain an empty segment ('//')"
    if any(c.isupper() for c in path):
        return "the path must be lowercase (allowed: a-z, 0-9, '-', '_', '/')"
    return "the path may contain only a-z, 0-9, '-', '_' and '/'"


def validate_path(path: object) -> str:
    """`path` itself when valid, else 400 invalid_path (details.path never echoes overlong input)."""
    problem = path_problem(path)
    if problem:
        shown = path if isinstance(path, str) and len(path) <= MAX_PATH_LENGTH else None
        raise ScaiVaultError("invalid_path", problem, details={"path": shown} if shown else None)
    return path  # type: ignore[return-value]


def refuse_system_path(path: str) -> None:
    """400 invalid_path for a secret write under the reserved `sys/` prefix (issue 16)."""
    if path == SYSTEM_PREFIX.rstrip("/") or path.startswith(SYSTEM_PREFIX):
        raise ScaiVaultError("invalid_path", "the sys/ prefix is reserved for administrative resources "
                             "(policies name it to delegate admin calls) and cannot hold secrets",
                             details={"path": path, "reason": "reserved_prefix"})
