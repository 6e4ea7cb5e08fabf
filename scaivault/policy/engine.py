"""Evaluation of one identity's compiled policies (spec/20 section 5.8, plus deny rules).

Order: a matching deny rule whose conditions hold wins over everything; otherwise a
matching allow rule whose conditions hold grants; otherwise the caller is refused with
the code of the first condition that kept an otherwise matching allow rule from applying
(details.failed_condition), or plain access_denied when no allow rule matched at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from ..errors import ScaiVaultError
from .rules import CONDITION_CODES, PERMISSIONS, RequestContext, Rule, parse_rules


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy's rules compiled once; `binding_expires_at` is when the caller's binding lapses."""

    policy_id: str
    name: str
    rules: tuple[Rule, ...]
    binding_expires_at: datetime | None = None

    @classmethod
    def from_row(cls, policy_id: str, name: str, rules_json: Any,
                 binding_expires_at: datetime | None = None) -> "CompiledPolicy":
        # stored rules passed validation when written; the wildcard limit guards writes only
        return cls(policy_id, name, tuple(parse_rules(rules_json, max_wildcards=None)), binding_expires_at)


@dataclass(frozen=True)
class Decision:
    """The outcome of one check; `rule` names the deciding policy and rule when there is one."""

    allowed: bool
    code: str | None = None
    message: str = ""
    failed_condition: str | None = None
    policy_id: str | None = None
    policy_name: str | None = None
    rule_index: int | None = None
    effect: str | None = None
    path_pattern: str | None = None
    via: str = "policy"                # policy | role

    def error(self, path: str) -> ScaiVaultError:
        details: dict[str, Any] = {"path": path}
        if self.failed_condition:
            details["failed_condition"] = self.failed_condition
        if self.policy_id and self.effect == "deny":
            details["policy_id"] = self.policy_id
        return ScaiVaultError(self.code or "access_denied", self.message, details=details)

    def explain(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed": self.allowed, "via": self.via}
        if not self.allowed:
            out["code"] = self.code
            out["reason"] = self.message
        if self.failed_condition:
            out["failed_condition"] = self.failed_condition
        if self.policy_id:
            out["matched_rule"] = {"policy_id": self.policy_id, "policy_name": self.policy_name,
                                   "rule_index": self.rule_index, "effect": self.effect,
                                   "path_pattern": self.path_pattern}
        return out


ALLOW_ALL = Decision(True, via="role", message="granted by an admin role")


def _decision_for(policy: CompiledPolicy, rule: Rule, allowed: bool, **kw: Any) -> Decision:
    return Decision(allowed, policy_id=policy.policy_id, policy_name=policy.name, rule_index=rule.index,
                    effect=rule.effect, path_pattern=rule.pattern.text, **kw)


@dataclass
class PolicySet:
    """Every policy bound to one identity (directly or through its groups) in one tenant."""

    policies: tuple[CompiledPolicy, ...]
    _by_permission: dict[str, tuple[list, list]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._indexed: dict[str, tuple[dict, list, dict, list]] = {}
        for perm in PERMISSIONS:
            denies, allows = [], []
            for policy in self.policies:
                for rule in policy.rules:
                    if rule.grants(perm):
                        (denies if rule.effect == "deny" else allows).append((policy, rule))
            self._by_permission[perm] = (denies, allows)
            self._indexed[perm] = (*_index(denies), *_index(allows))

    def _candidates(self, path: str, permission: str) -> tuple[list, list]:
        """Rules that can match `path`: those whose first segment is `path`'s, plus wildcard-led ones, in order."""
        head = path.split("/", 1)[0]
        deny_heads, deny_rest, allow_heads, allow_rest = self._indexed[permission]
        denies = _merge(deny_heads.get(head), deny_rest)
        allows = _merge(allow_heads.get(head), allow_rest)
        return denies, allows

    @property
    def empty(self) -> bool:
        return not self.policies

    def decide(self, path: str, permission: str, ctx: RequestContext) -> Decision:
        """Whether `permission` on `path` is granted; never raises."""
        denies, allows = self._candidates(path, permission)
        for _, policy, rule in denies:
            if rule.pattern.matches(path) and (rule.conditions is None or rule.conditions.first_failure(ctx) is None):
                return _decision_for(policy, rule, False, code="access_denied",
                                     message=f"{permission} on this path is denied by policy {policy.name}")
        near_miss: Decision | None = None
        for _, policy, rule in allows:
            if not rule.pattern.matches(path):
                continue
            failed = rule.conditions.first_failure(ctx) if rule.conditions is not None else None
            if failed is None:
                return _decision_for(policy, rule, True)
            if near_miss is None:
                near_miss = _decision_for(policy, rule, False, code=CONDITION_CODES[failed], failed_condition=failed,
                                          message=f"a condition of the matching rule is not met: {failed}")
        if near_miss is not None:
            return near_miss
        return Decision(False, code="access_denied", message=f"no policy rule grants {permission} on this path")

    def allows(self, path: str, permission: str, ctx: RequestContext) -> bool:
        return self.decide(path, permission, ctx).allowed

    # ------------------------------------------------------------- listing support
    def list_prefixes(self) -> list[str]:
        """Literal prefixes under which `list` may be granted (for narrowing listing queries)."""
        prefixes = sorted({rule.pattern.literal_prefix for _, rule in self._by_permission["list"][1]})
        # drop a prefix already covered by a shorter one
        kept: list[str] = []
        for p in prefixes:
            if not any(p.startswith(k) for k in kept):
                kept.append(p)
        return kept

    def list_sql_regex(self, ctx: RequestContext) -> str | None:
        """One PostgreSQL regex matching every path some applicable allow-list rule matches (None: none)."""
        parts = sorted({rule.pattern.sql_regex for _, rule in self._by_permission["list"][1]
                        if rule.conditions is None or rule.conditions.first_failure(ctx) is None})
        if not parts:
            return None
        return "|".join(f"(?:{p})" for p in parts)

    def has_list_denies(self) -> bool:
        return bool(self._by_permission["list"][0])

    def lists_whole_subtree(self, folder: str, ctx: RequestContext) -> bool:
        """True when every path below `folder` is listable without looking at single paths."""
        denies, allows = self._by_permission["list"]
        if any(rule.pattern.could_match_below(folder) for _, rule in denies):
            return False
        return any(rule.pattern.covers_subtree(folder) and
                   (rule.conditions is None or rule.conditions.first_failure(ctx) is None)
                   for _, rule in allows)

    def may_list_below(self, folder: str) -> bool:
        """False when no allow rule could match anything below `folder`."""
        return any(rule.pattern.could_match_below(folder) for _, rule in self._by_permission["list"][1])


def _index(entries: list) -> tuple[dict[str, list], list]:
    """Split (policy, rule) entries by a literal first segment; keep the original order number."""
    heads: dict[str, list] = {}
    rest: list = []
    for order, (policy, rule) in enumerate(entries):
        first = rule.pattern.text.split("/", 1)[0]
        if "*" in first or "?" in first:
            rest.append((order, policy, rule))
        else:
            heads.setdefault(first, []).append((order, policy, rule))
    return heads, rest


def _merge(a: list | None, b: list) -> list:
    if not a:
        return b
    if not b:
        return a
    return sorted(a + b, key=lambda entry: entry[0])


def compile_policies(rows: Iterable[tuple[str, str, Any, datetime | None]]) -> PolicySet:
    """Build a PolicySet from (policy_id, name, rules_json, binding_expires_at) rows."""
    return PolicySet(tuple(CompiledPolicy.from_row(*row) for row in rows))
