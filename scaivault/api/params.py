"""Path and query parameter schemas, by name (issue 16): the document declares them and the pipeline checks
every declared query parameter against the same schema before the view runs, so the two cannot disagree.

`@endpoint(query={"name": "description"})` uses the schema of QUERY_SCHEMAS for that name (a bounded NUL-free
string when unnamed); `query={"status": ("description", {...schema...})}` declares one for that route only.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ScaiVaultError

_NO_NUL = r"^[^\u0000]*$"
SECRET_PATH_RE = r"^[a-z0-9_-]+(/[a-z0-9_-]+){0,9}$"     # scaivault.policy.paths.validate_path
_SECRET_PATH = {"type": "string", "pattern": SECRET_PATH_RE, "maxLength": 512}
_BOOL = {"type": "string", "enum": ["true", "false"]}
# positive, at most 999999s/m, 99999h, 9999d, 999w: all within the 36500d ceiling of scaivault.config.parse_duration
DURATION_RE = r"^([1-9][0-9]{0,5}[sm]|[1-9][0-9]{0,4}h|[1-9][0-9]{0,3}d|[1-9][0-9]{0,2}w)$"
_DURATION = {"type": "string", "pattern": DURATION_RE}
# 1s..366d: at most 9999999s, 9999m, 999h, 366d or 52w (lease and token lifetimes)
YEAR_DURATION_RE = (r"^([1-9][0-9]{0,6}s|[1-9][0-9]{0,3}m|[1-9][0-9]{0,2}h|([1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d"
                    r"|([1-9]|[1-4][0-9]|5[0-2])w)$")
_CURSOR = {"type": "string", "pattern": r"^([A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22})?$", "maxLength": 1024,
           "description": "opaque and signed: pass the previous page's `cursor` unchanged (else 400 invalid_cursor); "
                          "empty or absent: the first page"}
_TEXT = {"type": "string", "maxLength": 256, "pattern": _NO_NUL}
_NAME = {"type": "string", "maxLength": 128, "pattern": _NO_NUL}      # ids, names, states: any other parameter
PATH_SCHEMAS: dict[str, dict] = {
    "path": _SECRET_PATH,
    "secret_path": _SECRET_PATH,
    "tenant_id": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"},
    "identity_type": {"type": "string", "enum": ["user", "group", "service_account"]},
    "number": {"type": "integer", "minimum": 1, "maximum": 100000},
}
QUERY_SCHEMAS: dict[str, dict] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "page": {"type": "integer", "minimum": 1, "maximum": 1000000},
    "page_size": {"type": "integer", "minimum": 1, "maximum": 500},
    "version": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "cursor": _CURSOR, "partner_cursor": _CURSOR,
    "prefix": {"type": "string", "pattern": r"^([a-z0-9_-]+/){0,9}[a-z0-9_-]{0,64}$", "maxLength": 512},
    "delimiter": {"type": "string", "enum": ["/"]},
    "scope": {"type": "string", "enum": ["tenant", "partner"]},
    "expires_within": _DURATION, "expiring_within": _DURATION,
    "tag": _TEXT, "owner": _TEXT, "q": _TEXT,
    "within_hours": {"type": "integer", "minimum": 0, "maximum": 24 * 3660},
    **{flag: _BOOL for flag in ("include_deleted", "include_inactive", "include_partner", "include_revoked",
                                "force", "permanent", "include_overdue", "active_only")},
}
_CODES = {"page": "validation_error", "page_size": "validation_error",    # spec/10's identity paging: 422
          "cursor": "invalid_cursor", "partner_cursor": "invalid_cursor", "expires_within": "invalid_duration",
          "expiring_within": "invalid_duration"}
_INT_RE = re.compile(r"-?[0-9]{1,19}", re.ASCII)
# body members typed with these answer the documented codes, not 422 (spec/20 8, spec/30 1)
SecretPath = Annotated[str, Field(pattern=SECRET_PATH_RE, max_length=512, description="a secret path")]
Duration = Annotated[str, Field(pattern=DURATION_RE, description="a duration: 30s, 15m, 48h, 90d, 2w")]
SECRET_TYPE_RE = r"^(kv|json|certificate|ssh_key|api_key)$"      # scaivault.services.secrets SECRET_TYPES
SecretType = Annotated[str, Field(pattern=SECRET_TYPE_RE, description="kv | json | certificate | ssh_key | api_key")]
WEBHOOK_URL_RE = r"^https?://[^\s/?#@]+(/[^\s]*)?$"
WebhookUrl = Annotated[str, Field(pattern=WEBHOOK_URL_RE, max_length=2048,
                                  description="https:// endpoint (http:// only with WEBHOOK_ALLOW_HTTP); private and "
                                              "loopback destinations are refused (400 invalid_webhook_url)")]
PATTERN_CODES = {WEBHOOK_URL_RE: ("invalid_webhook_url", "must be an https:// URL without credentials"),
                 SECRET_TYPE_RE: ("invalid_secret_type", "must be one of kv, json, certificate, ssh_key, api_key"),
                 SECRET_PATH_RE: ("invalid_path", "the path may contain only a-z, 0-9, '-', '_' and '/' "
                                                  "(1..10 segments, at most 512 characters)"),
                 DURATION_RE: ("invalid_duration", "must be a duration such as 24h, 7d or 90d (at most 999999s, "
                                                   "99999h, 9999d or 999w)")}


def query_schema(name: str, declared: Any) -> tuple[str, dict]:
    """(description, schema) of a declared query parameter."""
    if isinstance(declared, tuple):
        return declared[0], declared[1]
    return declared, QUERY_SCHEMAS.get(name, _NAME)


def check_query(declared: dict[str, Any], args) -> None:
    """400 for a declared query parameter given twice or not matching its schema (invalid_cursor for cursors,
    invalid_duration for durations, invalid_request otherwise). Undeclared parameters are ignored."""
    for name, spec in declared.items():
        values = args.getlist(name)
        if not values:
            continue
        code = _CODES.get(name, "invalid_request")
        if len(values) > 1:
            raise ScaiVaultError(code, f"{name} is given more than once", details={"parameter": name})
        problem = value_problem(values[0], query_schema(name, spec)[1])
        if problem and code == "validation_error":
            raise ScaiVaultError(code, "bad query parameters", details={"fields": {name: problem}})
        if problem:
            raise ScaiVaultError(code, f"{name} {problem}", details={"parameter": name})


def value_problem(value: str, schema: dict) -> str | None:
    """Why the query-string `value` does not match `schema` (the subset the declarations use), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if schema.get("type") == "integer":
        if not _INT_RE.fullmatch(value):
            return "must be an integer"
        number = int(value)
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and number < low) or (high is not None and number > high):
            return f"must be an integer between {low} and {high}"
        return None
    if "enum" in schema and value not in schema["enum"]:
        return "must be one of " + ", ".join(map(str, schema["enum"]))
    if len(value) > schema.get("maxLength", 1 << 30):
        return f"is longer than {schema['maxLength']} characters"
    if len(value) < schema.get("minLength", 0):
        return f"is shorter than {schema['minLength']} characters"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return "is malformed"
    return None


# a name: 1..128 characters, not only whitespace (the services strip it)
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"\S")]


class PatchBody(BaseModel):
    """A PATCH body: members left out stay as they are; an empty body changes nothing and is refused (422)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError("nothing to change")
        return data
