"""Path-pattern globs (spec/20 section 5.4) and the decided edge cases (docs/decisions.md)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from scaivault.errors import ScaiVaultError
from scaivault.policy import PathPattern, path_problem, validate_path
from scaivault.policy.glob import MAX_WILDCARDS

DOCUMENTED_VECTORS = [
    ("app/db", ["app/db"], ["app/db/password"]),
    ("app/db/*", ["app/db/password", "app/db/user"], ["app/db/primary/password"]),
    ("app/**", ["app/db", "app/db/password", "app/x/y/z"], ["other/app/db"]),
    ("**/ssl/*", ["app/ssl/cert", "service/ssl/key"], ["ssl/cert"]),
    ("environments/production/**", ["environments/production/api/db"], ["environments/staging/api/db"]),
]


@pytest.mark.parametrize("pattern,matching,not_matching", DOCUMENTED_VECTORS)
def test_documented_vectors_match_as_the_spec_table_says(pattern, matching, not_matching):
    compiled = PathPattern.compile(pattern)
    for path in matching:
        assert compiled.matches(path), path
    for path in not_matching:
        assert not compiled.matches(path), path


@pytest.mark.parametrize("pattern,path,expected", [
    ("app/**", "app", False),               # trailing ** is everything below, not the folder itself
    ("a/**/b", "a/b", True),                # ** between segments may match zero segments
    ("a/**/b", "a/x/y/b", True),
    ("**", "anything/at/all", True),
    ("**", "one", True),
    ("**/x", "x", False),                   # leading ** needs at least one segment
    ("app/db-*", "app/db-primary", True),   # * matches part of a segment
    ("app/db-*", "app/db-", True),
    ("app/db-*", "app/db-primary/x", False),
    ("app/*-key", "app/api-key", True),
    ("app/*", "app/a/b", False),
    ("app/?", "app/a", True),
    ("app/?", "app/ab", False),
    ("a?c", "a/c", False),                  # ? never matches '/'
    ("*", "top", True),
    ("*", "top/level", False),
    ("app/*/db", "app/x/db", True),
])
def test_decided_edge_cases(pattern, path, expected):
    assert PathPattern.compile(pattern).matches(path) is expected


@pytest.mark.parametrize("bad", [
    "", "/app", "app/", "app//db", "App/db", "app/a**", "app/**b", "app/***", "**/**/x", "app/db.key",
    "a\\*b", "x" * 513, "/".join(["a"] * 11), None, 7,
])
def test_invalid_patterns_are_rejected_with_invalid_glob(bad):
    with pytest.raises(ScaiVaultError) as exc:
        PathPattern.compile(bad)
    assert exc.value.code == "invalid_glob"
    assert exc.value.status == 400


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "A/b", "a/b.c", "a b", "x" * 513,
                                 "/".join(["s"] * 11)])
def test_invalid_secret_paths_are_rejected_with_invalid_path(bad):
    assert path_problem(bad)
    with pytest.raises(ScaiVaultError) as exc:
        validate_path(bad)
    assert exc.value.code == "invalid_path"


def test_valid_paths_up_to_the_limits_are_accepted():
    assert validate_path("/".join(["s"] * 10)) == "/".join(["s"] * 10)
    long = ("a" * 50 + "/") * 9 + "a" * 53
    assert len(long) == 512
    assert validate_path(long) == long
    assert validate_path("env_1/svc-2/db") == "env_1/svc-2/db"


# ----------------------------------------------------------------- property test
def _ref_segment(pat: str, seg: str) -> bool:
    """Textbook recursive wildcard match within one segment."""
    if not pat:
        return not seg
    if pat[0] == "*":
        return any(_ref_segment(pat[1:], seg[k:]) for k in range(len(seg) + 1))
    if not seg:
        return False
    return (pat[0] == "?" or pat[0] == seg[0]) and _ref_segment(pat[1:], seg[1:])


def reference_match(pattern: str, path: str) -> bool:
    """The decided semantics written as plain recursion over segments (no regex)."""
    ps, xs = pattern.split("/"), path.split("/")

    def walk(i: int, j: int) -> bool:
        if i == len(ps):
            return j == len(xs)
        if ps[i] == "**":
            inner = 0 < i < len(ps) - 1
            first = j if inner else j + 1
            return any(walk(i + 1, k) for k in range(first, len(xs) + 1))
        return j < len(xs) and _ref_segment(ps[i], xs[j]) and walk(i + 1, j + 1)

    return walk(0, 0)


LITERALS = ["a", "b", "ab", "ssl", "x-1", "db_2"]
path_strategy = st.lists(st.sampled_from(LITERALS), min_size=1, max_size=7).map("/".join)
pattern_segment = st.sampled_from(LITERALS + ["*", "**", "?", "a*", "*b", "a?", "?b", "*s*", "x-?",
                                             "*a*b", "a*b*", "*?*", "?*b", "a*?b*", "*b*b*"])


def _valid_pattern(segments: list[str]) -> bool:
    """No `**/**`, and within the wildcard limit (six segments of up to three could exceed it)."""
    wildcards = sum(1 if seg == "**" else seg.count("*") + seg.count("?") for seg in segments)
    return not any(a == b == "**" for a, b in zip(segments, segments[1:])) and wildcards <= MAX_WILDCARDS


pattern_strategy = st.lists(pattern_segment, min_size=1, max_size=6).filter(_valid_pattern).map("/".join)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(pattern=pattern_strategy, path=path_strategy)
def test_compiled_matcher_agrees_with_the_reference_matcher(pattern, path):
    assert PathPattern.compile(pattern).matches(path) == reference_match(pattern, path)


@settings(max_examples=500, deadline=None)
@given(path=path_strategy)
def test_a_literal_pattern_matches_exactly_its_own_path(path):
    assert PathPattern.compile(path).matches(path)
    assert not PathPattern.compile(path).matches(path + "/x")
    assert PathPattern.compile(path + "/**").matches(path + "/x")
    assert not PathPattern.compile(path + "/**").matches(path)


# ----------------------------------------------------------------- bounded time (issue 9 F5)
PATHOLOGICAL = "*a*a*a*a*a*a*a*a*a*a*a*a*b"   # the review's rule: 5 s on a 30-character path before


@pytest.mark.parametrize("length", [30, 200, 512])
def test_a_pathological_rule_is_matched_in_milliseconds(length):
    """Invariant 12 (nothing a tenant controls can stall a worker): a policy author's pattern is
    matched without backtracking, so the review's rule on a long path costs microseconds, not seconds."""
    import time

    compiled = PathPattern.compile(PATHOLOGICAL)
    for path in ("a" * length, "/".join(["a" * (length // 10)] * 10)[:length].strip("/"), "a" * (length - 1) + "b"):
        started = time.perf_counter()
        for _ in range(100):
            compiled.matches(path)
        assert (time.perf_counter() - started) / 100 < 0.002, (length, path)
    assert compiled.matches("a" * 12 + "b") and not compiled.matches("a" * 11 + "b")


@pytest.mark.parametrize("pattern", [
    "**/a*/**/a*/**/a*/**/a*/**/b",            # many `**` runs: placed leftmost-first, never every split
    "**/*a*a*/**/*a*a*/**/*a*a*/**/b",         # several per segment: runs and chunks placed leftmost-first
    "*a*a*a*/*a*a*a*/*a*a*a*/*a*a*a*/b",
])
def test_deep_and_many_star_patterns_are_matched_in_bounded_time(pattern):
    import time

    compiled = PathPattern.compile(pattern)
    for path in ("/".join(["a" * 50] * 10), "/".join(["a" * 50] * 9) + "/c", "/".join(["ab" * 25] * 10)):
        started = time.perf_counter()
        assert not compiled.matches(path)
        assert time.perf_counter() - started < 0.01, (pattern, path)
    assert compiled.matches("x/aaa/aaa/aaa/aaa/b" if pattern.startswith("**") else "aaa/aaa/aaa/aaa/b")


def test_a_pattern_with_too_many_wildcards_is_refused_with_validation_error():
    """The limit on wildcards per pattern (defence in depth next to the linear matcher)."""
    from scaivault.policy.glob import MAX_WILDCARDS

    PathPattern.compile("?" * MAX_WILDCARDS)
    with pytest.raises(ScaiVaultError) as exc:
        PathPattern.compile("?" * (MAX_WILDCARDS + 1))
    assert exc.value.code == "validation_error" and exc.value.status == 422
    assert PathPattern.compile("?" * (MAX_WILDCARDS + 1), max_wildcards=None).matches("a" * (MAX_WILDCARDS + 1))


@pytest.fixture(scope="module")
def pg():
    import pg8000.native

    from tests.conftest import PG_HOST, PG_PORT, PG_USER

    conn = pg8000.native.Connection(user=PG_USER, host=PG_HOST, port=PG_PORT, database="postgres")
    yield conn
    conn.close()


@settings(max_examples=300, deadline=None)
@given(pattern=pattern_strategy, path=path_strategy)
def test_the_postgresql_form_of_a_pattern_matches_the_same_paths(pg, pattern, path):
    compiled = PathPattern.compile(pattern)
    in_pg = pg.run("SELECT CAST(:path AS text) ~ CAST(:re AS text)", path=path, re=compiled.sql_regex)[0][0]
    assert in_pg == compiled.matches(path)
