"""The safety controls of spec/50 6.3, evaluated in the MCP process before any API call.

They only narrow: a refused call never reaches ScaiVault, an allowed one is still checked by
the server against the token's scopes and policies. Prefixes match whole segments
(`apps/web` covers `apps/web` and `apps/web/db`, not `apps/website`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from scaivault_sdk.calls import checked_path

MASK = "••••••"
WILDCARDS = "*?[{"


class Refused(Exception):
    """A call the controls do not let through; `control` names the variable that refused it."""

    def __init__(self, control: str, message: str):
        super().__init__(message)
        self.control = control
        self.message = message


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _prefixes(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip().strip("/") for p in (value or "").split(",") if p.strip().strip("/"))


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class SafetyControls:
    read_only: bool = False
    mask_values: bool = False
    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SafetyControls":
        return cls(read_only=_flag(env.get("SCAIVAULT_READ_ONLY")), mask_values=_flag(env.get("SCAIVAULT_MASK_VALUES")),
                   allowed=_prefixes(env.get("SCAIVAULT_ALLOWED_PATHS")),
                   denied=_prefixes(env.get("SCAIVAULT_DENIED_PATHS")))

    def describe(self) -> dict[str, Any]:
        return {"read_only": self.read_only, "mask_values": self.mask_values, "allowed_paths": list(self.allowed),
                "denied_paths": list(self.denied)}

    def check_write(self, tool: str) -> None:
        if self.read_only:
            raise Refused("SCAIVAULT_READ_ONLY", f"{tool} changes data and this MCP server is read-only")

    def permits(self, path: str) -> bool:
        if any(_under(path, d) for d in self.denied):
            return False
        return not self.allowed or any(_under(path, a) for a in self.allowed)

    def check_path(self, path: str) -> str:
        """The normalised path, or Refused when it is denied or outside the allowed prefixes."""
        clean = checked_path(path)
        denied = next((d for d in self.denied if _under(clean, d)), None)
        if denied is not None:
            raise Refused("SCAIVAULT_DENIED_PATHS", f"{clean} is under the denied prefix {denied}")
        if self.allowed and not any(_under(clean, a) for a in self.allowed):
            raise Refused("SCAIVAULT_ALLOWED_PATHS", f"{clean} is outside the allowed prefixes")
        return clean

    def check_listing(self, prefix: str) -> str:
        """A listing prefix may be a parent of an allowed prefix (items are filtered), never inside a denied one."""
        clean = prefix.strip("/")
        if not clean:
            return ""
        clean = checked_path(clean)
        denied = next((d for d in self.denied if _under(clean, d)), None)
        if denied is not None:
            raise Refused("SCAIVAULT_DENIED_PATHS", f"{clean} is under the denied prefix {denied}")
        if self.allowed and not any(_under(clean, a) or _under(a, clean) for a in self.allowed):
            raise Refused("SCAIVAULT_ALLOWED_PATHS", f"{clean} is outside the allowed prefixes")
        return clean

    def check_pattern(self, pattern: str) -> None:
        """A policy rule may only reach permitted paths: its literal part must be allowed and cover no denied prefix."""
        literal = pattern
        for i, char in enumerate(pattern):
            if char in WILDCARDS:
                literal = pattern[:i]
                break
        literal = literal.rsplit("/", 1)[0] if literal != pattern else literal
        literal = literal.strip("/")
        if (self.allowed or self.denied) and not literal:
            raise Refused("SCAIVAULT_ALLOWED_PATHS" if self.allowed else "SCAIVAULT_DENIED_PATHS",
                          f"the pattern {pattern!r} reaches every path")
        if self.allowed and not any(_under(literal, a) for a in self.allowed):
            raise Refused("SCAIVAULT_ALLOWED_PATHS", f"the pattern {pattern!r} reaches outside the allowed prefixes")
        covered = next((d for d in self.denied if _under(d, literal) or _under(literal, d)), None)
        if covered is not None:
            raise Refused("SCAIVAULT_DENIED_PATHS", f"the pattern {pattern!r} reaches the denied prefix {covered}")

    def mask(self, data: dict[str, Any]) -> dict[str, Any]:
        """Keys stay visible (existence can be confirmed); values are replaced."""
        return {key: MASK for key in data} if self.mask_values else data
