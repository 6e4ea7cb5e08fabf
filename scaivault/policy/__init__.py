"""Access policies: path globs, rules with conditions, evaluation, the per-identity cache."""
from __future__ import annotations

from .engine import CompiledPolicy, Decision, PolicySet, compile_policies
from .glob import PathPattern
from .paths import path_problem, validate_path
from .rules import PERMISSIONS, RequestContext, Rule, parse_rules

__all__ = ["CompiledPolicy", "Decision", "PolicySet", "compile_policies", "PathPattern",
           "path_problem", "validate_path", "PERMISSIONS", "RequestContext", "Rule", "parse_rules"]
