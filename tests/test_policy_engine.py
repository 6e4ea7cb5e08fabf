"""Policy evaluation (spec/20 section 5.8) with conditions and deny rules, as pure code."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from scaivault.errors import ScaiVaultError
from scaivault.policy import RequestContext, compile_policies, parse_rules

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)       # a Monday, 10:00 UTC


def policies(*rule_lists):
    return compile_policies((f"pol_{i}", f"p{i}", rules, None) for i, rules in enumerate(rule_lists))


def ctx(ip="10.1.2.3", mfa=NOW - timedelta(minutes=5), now=NOW):
    return RequestContext(source_ip=ip, mfa_verified_at=mfa, now=now)


def test_default_is_deny_with_access_denied():
    decision = policies().decide("app/db", "read", ctx())
    assert not decision.allowed and decision.code == "access_denied"


def test_a_matching_allow_rule_grants_only_its_permissions():
    ps = policies([{"path_pattern": "app/db", "permissions": ["read"]}])
    assert ps.decide("app/db", "read", ctx()).allowed
    assert not ps.decide("app/db", "write", ctx()).allowed
    assert not ps.decide("app/db2", "read", ctx()).allowed


def test_admin_permission_implies_every_other_permission():
    ps = policies([{"path_pattern": "app/**", "permissions": ["admin"]}])
    for perm in ("read", "write", "delete", "list", "rotate", "admin"):
        assert ps.decide("app/x", perm, ctx()).allowed


def test_union_of_allows_across_policies():
    ps = policies([{"path_pattern": "a/*", "permissions": ["read"]}],
                  [{"path_pattern": "b/**", "permissions": ["write"]}])
    assert ps.decide("a/x", "read", ctx()).allowed
    assert ps.decide("b/x/y", "write", ctx()).allowed
    assert not ps.decide("b/x/y", "read", ctx()).allowed


def test_a_matching_deny_rule_wins_over_any_allow():
    ps = policies([{"path_pattern": "app/**", "permissions": ["admin"]}],
                  [{"path_pattern": "app/prod/*", "permissions": ["read"], "effect": "deny"}])
    denied = ps.decide("app/prod/db", "read", ctx())
    assert not denied.allowed and denied.code == "access_denied"
    assert denied.policy_id == "pol_1" and denied.effect == "deny"
    assert ps.decide("app/prod/db", "write", ctx()).allowed     # deny names read only
    assert ps.decide("app/dev/db", "read", ctx()).allowed


def test_deny_with_admin_denies_every_permission():
    ps = policies([{"path_pattern": "**", "permissions": ["admin"]},
                   {"path_pattern": "root/**", "permissions": ["admin"], "effect": "deny"}])
    assert not ps.decide("root/x", "list", ctx()).allowed
    assert ps.decide("other/x", "list", ctx()).allowed


def test_a_deny_rule_applies_only_when_its_conditions_hold():
    ps = policies([{"path_pattern": "app/*", "permissions": ["read"]},
                   {"path_pattern": "app/*", "permissions": ["read"], "effect": "deny",
                    "conditions": {"ip_ranges": ["192.168.0.0/16"]}}])
    assert ps.decide("app/x", "read", ctx(ip="10.0.0.1")).allowed
    assert not ps.decide("app/x", "read", ctx(ip="192.168.1.1")).allowed


def test_ip_range_condition_yields_ip_not_allowed_with_failed_condition():
    ps = policies([{"path_pattern": "app/*", "permissions": ["read"],
                    "conditions": {"ip_ranges": ["10.0.0.0/8"], "require_mfa": True}}])
    assert ps.decide("app/x", "read", ctx(ip="10.9.9.9")).allowed
    outside = ps.decide("app/x", "read", ctx(ip="11.0.0.1"))
    assert (outside.code, outside.failed_condition) == ("ip_not_allowed", "ip_ranges")
    err = outside.error("app/x")
    assert err.status == 403 and err.details["failed_condition"] == "ip_ranges"
    assert ps.decide("app/x", "read", ctx(ip=None)).code == "ip_not_allowed"


def test_require_mfa_yields_mfa_required():
    ps = policies([{"path_pattern": "app/*", "permissions": ["read"], "conditions": {"require_mfa": True}}])
    no_mfa = ps.decide("app/x", "read", ctx(mfa=None))
    assert (no_mfa.code, no_mfa.failed_condition) == ("mfa_required", "require_mfa")


def test_mfa_max_age_limits_how_old_the_verification_may_be():
    ps = policies([{"path_pattern": "app/*", "permissions": ["read"],
                    "conditions": {"require_mfa": True, "mfa_max_age": "15m"}}])
    assert ps.decide("app/x", "read", ctx(mfa=NOW - timedelta(minutes=5))).allowed
    assert ps.decide("app/x", "read", ctx(mfa=NOW - timedelta(hours=1))).code == "mfa_required"


def test_time_window_condition_with_days_and_hours_in_a_zone():
    window = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00",
              "timezone": "Europe/Amsterdam"}
    ps = policies([{"path_pattern": "app/*", "permissions": ["read"], "conditions": {"time_window": window}}])
    assert ps.decide("app/x", "read", ctx(now=NOW)).allowed                       # 11:00 in Amsterdam
    evening = ps.decide("app/x", "read", ctx(now=NOW.replace(hour=17)))           # 18:00 local
    assert (evening.code, evening.failed_condition) == ("time_window_violation", "time_window")
    saturday = NOW - timedelta(days=2)
    assert ps.decide("app/x", "read", ctx(now=saturday)).code == "time_window_violation"


def test_time_window_across_midnight():
    ps = policies([{"path_pattern": "a/*", "permissions": ["read"],
                    "conditions": {"time_window": {"start": "22:00", "end": "06:00"}}}])
    assert ps.decide("a/x", "read", ctx(now=NOW.replace(hour=23))).allowed
    assert ps.decide("a/x", "read", ctx(now=NOW.replace(hour=3))).allowed
    assert not ps.decide("a/x", "read", ctx(now=NOW.replace(hour=12))).allowed


def test_an_unconditional_allow_elsewhere_beats_a_failed_condition():
    ps = policies([{"path_pattern": "app/*", "permissions": ["read"], "conditions": {"require_mfa": True}}],
                  [{"path_pattern": "app/**", "permissions": ["read"]}])
    assert ps.decide("app/x", "read", ctx(mfa=None)).allowed


def test_explain_names_the_matching_policy_and_rule():
    ps = policies([{"path_pattern": "x/*", "permissions": ["list"]},
                   {"path_pattern": "app/db", "permissions": ["read"]}])
    explained = ps.decide("app/db", "read", ctx()).explain()
    assert explained["allowed"] is True
    assert explained["matched_rule"] == {"policy_id": "pol_0", "policy_name": "p0", "rule_index": 1,
                                         "effect": "allow", "path_pattern": "app/db"}


@pytest.mark.parametrize("rules,code", [
    ([], "invalid_policy"),
    ("nope", "invalid_policy"),
    ([{"permissions": ["read"]}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": []}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["fly"]}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "effect": "maybe"}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "extra": 1}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "conditions": {"ip_ranges": ["300.0.0.0/8"]}}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "conditions": {"require_mfa": "yes"}}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "conditions": {"weather": "sunny"}}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "conditions": {"time_window": {"start": "9am"}}}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "conditions": {"time_window": {"timezone": "Mars/Base"}}}], "invalid_policy"),
    ([{"path_pattern": "a/*", "permissions": ["read"], "conditions": {"mfa_max_age": "soon"}}], "invalid_duration"),
    ([{"path_pattern": "/a", "permissions": ["read"]}], "invalid_glob"),
])
def test_malformed_rules_are_rejected_with_a_precise_code(rules, code):
    with pytest.raises(ScaiVaultError) as exc:
        parse_rules(rules)
    assert exc.value.code == code and exc.value.status == 400


def test_listing_helpers_know_which_subtrees_are_visible():
    ps = policies([{"path_pattern": "env/prod/**", "permissions": ["list"]},
                   {"path_pattern": "env/dev/*/db", "permissions": ["list"]},
                   {"path_pattern": "env/prod/secret/**", "permissions": ["list"], "effect": "deny"}])
    assert ps.list_prefixes() == ["env/dev/", "env/prod/"]
    assert ps.lists_whole_subtree("env/prod/api/", ctx())
    assert not ps.lists_whole_subtree("env/prod/", ctx())          # a deny reaches inside
    assert not ps.lists_whole_subtree("env/dev/", ctx())
    assert ps.may_list_below("env/")
    assert not ps.may_list_below("other/")


def test_evaluation_takes_microseconds():
    rules = [{"path_pattern": f"team-{i}/**", "permissions": ["read", "list"]} for i in range(20)]
    rules += [{"path_pattern": "shared/*/db-?", "permissions": ["read"]},
              {"path_pattern": "team-3/prod/**", "permissions": ["read"], "effect": "deny"}]
    ps = policies(rules)
    c = ctx()
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        ps.decide("shared/api/db-1", "read", c)
    per_call_us = (time.perf_counter() - start) / n * 1e6
    assert ps.decide("shared/api/db-1", "read", c).allowed
    assert per_call_us < 50, per_call_us
