"""Policy rules: a compiled path pattern, permissions, an effect, and optional conditions.

`parse_rules` validates the JSON form stored in the policies table and sent by clients;
everything malformed is 400 invalid_policy (or invalid_glob for a bad pattern, 422
validation_error for a pattern over the wildcard limit), naming the rule by index so a
client can find it.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import parse_duration
from ..errors import ScaiVaultError
from ..inputs import is_ascii_digits
from .glob import MAX_WILDCARDS, PathPattern

PERMISSIONS = ("read", "write", "delete", "list", "rotate", "admin")
EFFECTS = ("allow", "deny")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RULES = 200

# condition name -> the 403 code a caller gets when it alone kept a rule from applying
CONDITION_CODES = {"ip_ranges": "ip_not_allowed", "require_mfa": "mfa_required",
                   "time_window": "time_window_violation"}


def _bad(index: int | None, problem: str) -> ScaiVaultError:
    where = f"rules[{index}]: " if index is not None else ""
    details = {"rule_index": index} if index is not None else None
    return ScaiVaultError("invalid_policy", where + problem, details=details)


@dataclass(frozen=True)
class RequestContext:
    """What conditions look at: caller address, MFA time and the clock."""

    source_ip: str | None = None
    mfa_verified_at: datetime | None = None
    now: datetime | None = None

    def at(self) -> datetime:
        return self.now or datetime.now(timezone.utc)

    @cached_property
    def address(self):
        """The parsed source IP, or None when absent or malformed (parsed once per request)."""
        try:
            return ipaddress.ip_address(self.source_ip or "")
        except ValueError:
            return None


@dataclass(frozen=True)
class TimeWindow:
    """Local wall-clock window: weekdays and [start, end) minutes; end < start wraps midnight."""

    days: frozenset[int]
    start: int
    end: int
    zone: ZoneInfo
    text: dict

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        if local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def _minutes(index: int, value: Any, name: str) -> int:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":" or not is_ascii_digits(value[:2] + value[3:]):
        raise _bad(index, f"conditions.time_window.{name} must be HH:MM")
    hours, minutes = int(value[:2]), int(value[3:])
    if hours == 24 and minutes == 0:
        return 24 * 60
    if hours > 23 or minutes > 59:
        raise _bad(index, f"conditions.time_window.{name} is not a time of day")
    return hours * 60 + minutes


def _time_window(index: int, raw: Any) -> TimeWindow:
    if not isinstance(raw, dict) or set(raw) - {"days", "start", "end", "timezone"}:
        raise _bad(index, "conditions.time_window takes days, start, end, timezone")
    days_raw = raw.get("days", list(DAYS))
    if not isinstance(days_raw, list) or not days_raw or any(d not in DAYS for d in days_raw):
        raise _bad(index, f"conditions.time_window.days must be a non-empty list of {', '.join(DAYS)}")
    start = _minutes(index, raw.get("start", "00:00"), "start")
    end = _minutes(index, raw.get("end", "24:00"), "end")
    if start == end or start == 24 * 60:
        raise _bad(index, "conditions.time_window start and end must differ")
    tz_name = raw.get("timezone", "UTC")
    try:
        zone = ZoneInfo(tz_name) if isinstance(tz_name, str) and tz_name else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is None:
        raise _bad(index, "conditions.time_window.timezone is not a known IANA zone")
    return TimeWindow(frozenset(DAYS.index(d) for d in days_raw), start, end, zone, dict(raw))


@dataclass(frozen=True)
class Conditions:
    """A rule's extra constraints; all present ones must hold."""

    ip_ranges: tuple = ()
    require_mfa: bool = False
    mfa_max_age: int | None = None         # seconds; None = any MFA verification on the token
    time_windows: tuple[TimeWindow, ...] = ()

    @classmethod
    def parse(cls, index: int, raw: Any) -> "Conditions | None":
        if raw is None or raw == {}:
            return None
        if not isinstance(raw, dict):
            raise _bad(index, "conditions must be an object")
        unknown = set(raw) - {"ip_ranges", "require_mfa", "mfa_max_age", "time_window"}
        if unknown:
            raise _bad(index, f"unknown condition(s): {', '.join(sorted(unknown))}")
        ranges: list = []
        if "ip_ranges" in raw:
            value = raw["ip_ranges"]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise _bad(index, "conditions.ip_ranges must be a non-empty list of CIDR strings")
            for cidr in value:
                try:
                    ranges.append(ipaddress.ip_network(cidr, strict=False))
                except ValueError:
                    raise _bad(index, f"conditions.ip_ranges: {cidr[:64]!r} is not a CIDR range") from None
        require_mfa = raw.get("require_mfa", False)
        if not isinstance(require_mfa, bool):
            raise _bad(index, "conditions.require_mfa must be true or false")
        max_age = None
        if "mfa_max_age" in raw:
            try:
                max_age = parse_duration(raw["mfa_max_age"])
            except ValueError:
                raise ScaiVaultError("invalid_duration", f"rules[{index}]: conditions.mfa_max_age is not a duration",
                                     details={"rule_index": index}) from None
        windows: tuple[TimeWindow, ...] = ()
        if "time_window" in raw:
            tw = raw["time_window"]
            items = tw if isinstance(tw, list) else [tw]
            if not items:
                raise _bad(index, "conditions.time_window must not be empty")
            windows = tuple(_time_window(index, item) for item in items)
        return cls(tuple(ranges), require_mfa, max_age, windows)

    def first_failure(self, ctx: RequestContext) -> str | None:
        """The name of the first unmet condition (ip_ranges, require_mfa, time_window), or None."""
        if self.ip_ranges:
            addr = ctx.address
            if addr is None:
                return "ip_ranges"
            if not any(addr in net for net in self.ip_ranges if net.version == addr.version):
                return "ip_ranges"
        if self.require_mfa:
            verified = ctx.mfa_verified_at
            if verified is None:
                return "require_mfa"
            if self.mfa_max_age is not None and ctx.at() - verified > timedelta(seconds=self.mfa_max_age):
                return "require_mfa"
        if self.time_windows:
            moment = ctx.at()
            if not any(w.contains(moment) for w in self.time_windows):
                return "time_window"
        return None


@dataclass(frozen=True)
class Rule:
    """One rule of a policy; `permissions` already expanded (admin means all of them)."""

    pattern: PathPattern
    permissions: frozenset[str]
    effect: str
    conditions: Conditions | None
    index: int
    raw: dict

    def grants(self, permission: str) -> bool:
        return permission in self.permissions


def parse_rule(index: int, raw: Any, max_wildcards: int | None = MAX_WILDCARDS) -> Rule:
    if not isinstance(raw, dict):
        raise _bad(index, "a rule must be an object")
    unknown = {k for k, v in raw.items() if v is not None} - {"path_pattern", "permissions", "conditions", "effect", "description"}
    if unknown:
        raise _bad(index, f"unknown field(s): {', '.join(sorted(unknown))}")
    if "path_pattern" not in raw:
        raise _bad(index, "path_pattern is required")
    try:
        pattern = PathPattern.compile(raw["path_pattern"], max_wildcards)
    except ScaiVaultError as exc:
        if exc.code != "validation_error":
            raise
        # a pattern over the wildcard limit: name the rule as a field, as request validation does
        raise ScaiVaultError("validation_error", f"rules[{index}]: {exc.message}",
                             details={"fields": {f"rules.{index}.path_pattern": exc.message},
                                      "rule_index": index}) from None
    perms = raw.get("permissions")
    if not isinstance(perms, list) or not perms or not all(isinstance(p, str) for p in perms):
        raise _bad(index, "permissions must be a non-empty list")
    unknown_perms = [p for p in perms if p not in PERMISSIONS]
    if unknown_perms:
        raise _bad(index, f"unknown permission(s) {', '.join(sorted(set(unknown_perms)))[:200]}; "
                          f"use {', '.join(PERMISSIONS)}")
    effect = raw.get("effect") or "allow"
    if effect not in EFFECTS:
        raise _bad(index, "effect must be allow or deny")
    expanded = frozenset(PERMISSIONS) if "admin" in perms else frozenset(perms)
    conditions = Conditions.parse(index, raw.get("conditions"))
    canonical = {"path_pattern": pattern.text, "permissions": list(dict.fromkeys(perms))}
    if effect != "allow":
        canonical["effect"] = effect
    if raw.get("conditions"):
        canonical["conditions"] = raw["conditions"]
    if isinstance(raw.get("description"), str):
        canonical["description"] = raw["description"][:500]
    return Rule(pattern, expanded, effect, conditions, index, canonical)


def parse_rules(raw: Any, *, max_wildcards: int | None = MAX_WILDCARDS) -> list[Rule]:
    """Validate a policy's rule list (1..MAX_RULES rules); `max_wildcards=None` for stored rules."""
    if not isinstance(raw, list) or not raw:
        raise _bad(None, "rules must be a non-empty list")
    if len(raw) > MAX_RULES:
        raise _bad(None, f"a policy holds at most {MAX_RULES} rules")
    return [parse_rule(i, r, max_wildcards) for i, r in enumerate(raw)]
