"""PKI roles: their fields with defaults, and the name, IP, TTL and key checks of issuance.

Matching rules (docs/decisions.md, PKI): an allowed domain without `*` matches itself when
`allow_bare_domains`, and any name below it when `allow_subdomains`; a `*` label in an
allowed domain matches exactly one label (so `*.svc.cluster.local` allows
`billing.svc.cluster.local`, not `a.b.svc.cluster.local` unless `allow_subdomains`). A
requested wildcard name (`*.x`) needs `allow_wildcards` and is matched like any other name.
All matching is label-wise and linear in the name length.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..config import parse_duration
from ..errors import ScaiVaultError, ValidationFailed
from .x509 import DEFAULT_KEY_SIZE, KEY_SIZES

DEFAULTS: dict[str, Any] = {
    "allowed_domains": [],
    "allow_subdomains": False,
    "allow_wildcards": False,
    "allow_bare_domains": False,
    "allow_ip_sans": False,
    "allow_any_name": False,
    "key_type": "rsa",          # rsa | ec | any (any: CSRs of any supported shape; issue makes rsa 2048)
    "key_bits": None,           # None: the type's default (rsa 2048, ec 256); 0 with key_type any
    "max_ttl": "720h",
    "ttl": None,                # default ttl of a request that names none (None: max_ttl)
    "server_flag": True,
    "client_flag": True,
    "require_cn": True,
    "store_private_keys": False,
}
_LABEL = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")
MAX_DOMAINS = 100
MAX_NAMES = 100


def not_allowed(message: str, value: str, field: str) -> ScaiVaultError:
    return ScaiVaultError("certificate_not_allowed", message, status=400,
                          details={"field": field, "value": value[:256]})


def validate_config(raw: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full role configuration (defaults filled in) from a create body or a PATCH over `base`."""
    config = dict(base or DEFAULTS)
    problems: dict[str, str] = {}
    for key, value in raw.items():
        if key not in DEFAULTS:
            continue
        config[key] = value
    domains = config["allowed_domains"]
    if (not isinstance(domains, list) or len(domains) > MAX_DOMAINS
            or not all(isinstance(d, str) and _pattern_ok(d) for d in domains)):
        problems["allowed_domains"] = f"must be a list of at most {MAX_DOMAINS} domain names or *.patterns"
    else:
        config["allowed_domains"] = [d.lower() for d in domains]
    for flag in ("allow_subdomains", "allow_wildcards", "allow_bare_domains", "allow_ip_sans", "allow_any_name",
                 "server_flag", "client_flag", "require_cn", "store_private_keys"):
        if not isinstance(config[flag], bool):
            problems[flag] = "must be true or false"
    key_type, key_bits = config["key_type"], config["key_bits"]
    if key_type not in ("rsa", "ec", "any"):
        problems["key_type"] = "must be rsa, ec or any"
    elif key_type == "any":
        config["key_bits"] = 0
    elif key_bits is None:
        config["key_bits"] = DEFAULT_KEY_SIZE[key_type]
    elif key_bits not in KEY_SIZES[key_type]:
        problems["key_bits"] = f"{key_type} keys: one of {', '.join(map(str, KEY_SIZES[key_type]))}"
    for name in ("max_ttl", "ttl"):
        if config[name] is None and name == "ttl":
            continue
        try:
            if parse_duration(config[name]) <= 0:
                raise ValueError
        except (ValueError, TypeError):
            raise ScaiVaultError("invalid_duration", f"{name} must be a duration such as 720h or 30d",
                                 details={"field": name}) from None
    if config["ttl"] is not None and parse_duration(config["ttl"]) > parse_duration(config["max_ttl"]):
        problems["ttl"] = "must not exceed max_ttl"
    if problems:
        raise ValidationFailed(problems)
    return config


def _pattern_ok(pattern: str) -> bool:
    labels = pattern.lower().split(".")
    return 0 < len(pattern) <= 253 and all(label == "*" or _LABEL.match(label) for label in labels)


def _hostname_ok(name: str) -> bool:
    labels = name.split(".")
    if not 0 < len(name) <= 253 or len(labels) < 1:
        return False
    if labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return False
    return all(_LABEL.match(label) for label in labels)


def _labels_match(pattern: list[str], name: list[str]) -> bool:
    return len(pattern) == len(name) and all(p == "*" or p == n for p, n in zip(pattern, name))


def name_allowed(config: dict[str, Any], name: str) -> bool:
    """Whether `name` (lower-case, validated) satisfies the role's domain rules."""
    if name.startswith("*.") and not config["allow_wildcards"]:
        return False
    if config["allow_any_name"]:
        return True
    labels = name.split(".")
    for domain in config["allowed_domains"]:
        d_labels = domain.split(".")
        if "*" in d_labels:
            if _labels_match(d_labels, labels):
                return True
            if config["allow_subdomains"] and len(labels) > len(d_labels) \
                    and _labels_match(d_labels, labels[-len(d_labels):]):
                return True
            continue
        if name == domain and config["allow_bare_domains"]:
            return True
        if config["allow_subdomains"] and name.endswith("." + domain):
            return True
    return False


def check_names(config: dict[str, Any], common_name: str | None, dns_names: list[str],
                ip_sans: list[str]) -> tuple[str | None, list[str], list[str]]:
    """(CN, DNS SANs including the CN when it is a host name, IP SANs) or 400 certificate_not_allowed."""
    if len(dns_names) + len(ip_sans) > MAX_NAMES:
        raise not_allowed(f"at most {MAX_NAMES} names per certificate", str(len(dns_names) + len(ip_sans)), "alt_names")
    if not common_name and config["require_cn"]:
        raise not_allowed("the role requires a common name", "", "common_name")
    names: list[str] = []
    cn = common_name.strip().lower() if common_name else None
    ips: list[str] = []
    for ip in ip_sans:
        try:
            parsed = ipaddress.ip_address(str(ip).strip())
        except ValueError:
            raise not_allowed(f"not an IP address: {str(ip)[:64]}", str(ip), "ip_sans") from None
        if not config["allow_ip_sans"]:
            raise not_allowed(f"the role does not allow IP SANs ({parsed})", str(parsed), "ip_sans")
        ips.append(str(parsed))
    candidates = ([("common_name", cn)] if cn else []) + [("alt_names", str(n).strip().lower()) for n in dns_names]
    for field, name in candidates:
        if field == "common_name" and _is_ip(name):
            if not config["allow_ip_sans"]:
                raise not_allowed(f"the role does not allow IP SANs ({name})", name, field)
            if name not in ips:
                ips.append(name)
            continue
        if not _hostname_ok(name):
            raise not_allowed(f"not a valid DNS name: {name[:64]}", name, field)
        if not name_allowed(config, name):
            raise not_allowed(f"{name} is not allowed by this role", name, field)
        if name not in names:
            names.append(name)
    return cn, names, ips


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def check_ttl(config: dict[str, Any], ttl: str | None) -> int:
    """Seconds of lifetime: the request's ttl, else the role's ttl, else max_ttl; never above max_ttl."""
    max_ttl = parse_duration(config["max_ttl"])
    if ttl is None:
        return parse_duration(config["ttl"]) if config.get("ttl") else max_ttl
    try:
        seconds = parse_duration(ttl)
    except (ValueError, TypeError):
        raise ScaiVaultError("invalid_duration", "ttl must be a duration such as 24h or 7d",
                             details={"field": "ttl"}) from None
    if seconds <= 0:
        raise ScaiVaultError("invalid_duration", "ttl must be positive", details={"field": "ttl"})
    if seconds > max_ttl:
        raise not_allowed(f"ttl {ttl} exceeds the role's max_ttl {config['max_ttl']}", ttl, "ttl")
    return seconds


def check_key_shape(config: dict[str, Any], key_type: str, key_bits: int) -> None:
    if config["key_type"] == "any":
        return
    if key_type != config["key_type"] or key_bits != config["key_bits"]:
        raise not_allowed(f"the role requires {config['key_type']} {config['key_bits']} keys, "
                          f"the CSR has {key_type} {key_bits}", f"{key_type} {key_bits}", "csr")
