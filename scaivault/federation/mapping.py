"""Path mapping of a federation backend: ScaiVault globs to backend path templates.

A rule is `"external/vault/**": "secret/app/**"` (the remainder after the literal prefix is
carried over) or an exact path to an exact path. Only a trailing `**` is allowed on either
side: a mapping must be invertible, so that sync can name the local path of a remote one.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ValidationFailed
from ..policy.paths import path_problem

MAX_RULES = 50


@dataclass(frozen=True)
class MappingRule:
    local: str            # "external/vault/**" or "external/vault/db"
    remote: str           # "secret/app/**" or "app/db"

    @property
    def recursive(self) -> bool:
        return self.local.endswith("/**")

    @property
    def local_prefix(self) -> str:
        return self.local[:-2] if self.recursive else self.local

    @property
    def remote_prefix(self) -> str:
        return self.remote[:-2] if self.recursive else self.remote

    def to_remote(self, path: str) -> str | None:
        if self.recursive:
            if path.startswith(self.local_prefix) and len(path) > len(self.local_prefix):
                return self.remote_prefix + path[len(self.local_prefix):]
            return None
        return self.remote if path == self.local else None

    def to_local(self, remote_path: str) -> str | None:
        if self.recursive:
            if remote_path.startswith(self.remote_prefix) and len(remote_path) > len(self.remote_prefix):
                return self.local_prefix + remote_path[len(self.remote_prefix):]
            return None
        return self.local if remote_path == self.remote else None


class PathMapping:
    """The ordered rules of one backend; the longest local prefix wins."""

    def __init__(self, rules: list[MappingRule]):
        self.rules = sorted(rules, key=lambda r: len(r.local_prefix), reverse=True)

    @classmethod
    def parse(cls, raw: object, field_name: str = "path_mapping") -> "PathMapping":
        if not isinstance(raw, dict) or not raw:
            raise ValidationFailed({field_name: "must be a non-empty object of ScaiVault glob -> backend path"})
        if len(raw) > MAX_RULES:
            raise ValidationFailed({field_name: f"at most {MAX_RULES} rules"})
        rules = []
        for local, remote in raw.items():
            where = f"{field_name}.{local}"
            if not isinstance(remote, str) or not remote or len(remote) > 512 or "\x00" in remote:
                raise ValidationFailed({where: "the backend path must be a non-empty string"})
            local_recursive, remote_recursive = local.endswith("/**"), remote.endswith("/**")
            if local_recursive != remote_recursive:
                raise ValidationFailed({where: "`/**` must end both sides or neither"})
            if "*" in local[:-3 if local_recursive else None] or "*" in remote[:-3 if remote_recursive else None] \
                    or "?" in local:
                raise ValidationFailed({where: "only a trailing `/**` is allowed as a wildcard"})
            problem = path_problem(local[:-3] if local_recursive else local)
            if problem:
                raise ValidationFailed({where: problem})
            rules.append(MappingRule(local, remote))
        return cls(rules)

    def as_dict(self) -> dict[str, str]:
        return {r.local: r.remote for r in sorted(self.rules, key=lambda r: r.local)}

    def to_remote(self, path: str) -> str | None:
        for rule in self.rules:
            remote = rule.to_remote(path)
            if remote is not None:
                return remote
        return None

    def to_local(self, remote_path: str) -> str | None:
        for rule in self.rules:
            local = rule.to_local(remote_path)
            if local is not None:
                return local
        return None

    def overlaps(self, other: "PathMapping") -> str | None:
        """A local path prefix both mappings claim, if any (two backends may not serve one path)."""
        for mine in self.rules:
            for theirs in other.rules:
                a, b = mine.local_prefix, theirs.local_prefix
                if a == b or (mine.recursive and b.startswith(a)) or (theirs.recursive and a.startswith(b)):
                    return mine.local
        return None
