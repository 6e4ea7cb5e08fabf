"""Rate limits per (identity, category); see spec/10 section 8."""
from __future__ import annotations


def enforce(category: str) -> None:
    """Take one unit from the caller's bucket for `category`, or raise rate_limited."""
    return None
