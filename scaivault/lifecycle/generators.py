"""Value generators of secret policies (spec/20 section 6.2): validation and generation.

Every random choice comes from `secrets` (the OS CSPRNG). A `random` string that must hold
certain character classes is drawn uniformly among the strings that hold them (rejection
sampling), so the requirement never biases positions or classes.
"""
from __future__ import annotations

import re
import secrets
import string
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from ..errors import ValidationFailed

CHARSETS: dict[str, str] = {
    "alphanumeric": string.ascii_letters + string.digits,
    "alpha": string.ascii_letters,
    "numeric": string.digits,
    "hex": "0123456789abcdef",
    "safe": string.ascii_letters + string.digits + "-._~",        # RFC 3986 unreserved: URL- and shell-safe
    "ascii_printable": "".join(chr(c) for c in range(33, 127)),   # printable ASCII without space
    "lower": string.ascii_lowercase,
    "upper": string.ascii_uppercase,
}
SYMBOLS = set(string.punctuation)
REQUIRE_CLASSES: dict[str, Callable[[str], bool]] = {
    "require_upper": str.isupper,
    "require_lower": str.islower,
    "require_digit": str.isdigit,
    "require_symbol": lambda c: c in SYMBOLS,
}
GENERATORS = ("random", "hex", "uuid", "template", "rsa_keypair", "ec_keypair", "ssh_keypair", "bcrypt_hash", "static")
POLICY_TYPES = ("password", "api_key", "oauth_client", "ssh_key", "custom")
MAX_LENGTH = 4096
MAX_FIELDS = 32
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
TEMPLATE_TOKEN = re.compile(r"\{\{\s*([a-z]+)(?::(\d+))?\s*\}\}")
_REJECTION_ATTEMPTS = 10_000

_CONFIG_KEYS: dict[str, set[str]] = {
    "random": {"length", "charset", *REQUIRE_CLASSES},
    "hex": {"length"},
    "uuid": {"version"},
    "template": {"template"},
    "rsa_keypair": {"bits", "public_key_field"},
    "ec_keypair": {"curve", "public_key_field"},
    "ssh_keypair": {"key_type", "comment", "bits", "public_key_field"},
    "bcrypt_hash": {"length", "rounds", "charset", "hash_field"},
    "static": {"value"},
}


# ------------------------------------------------------------------ validation
def _int(config: dict, key: str, where: str, problems: dict, default: int | None, lo: int, hi: int) -> int | None:
    value = config.get(key, default)
    if value is None:
        problems[f"{where}.{key}"] = "is required"
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        problems[f"{where}.{key}"] = f"must be an integer between {lo} and {hi}"
        return None
    return value


def second_output(field: dict) -> str | None:
    """The data key of a two-output generator's second value (public key, bcrypt hash)."""
    gen, name, config = field["generator"], field["name"], field.get("config") or {}
    if gen in ("rsa_keypair", "ec_keypair", "ssh_keypair"):
        default = "public_key" if name == "private_key" else f"{name}_public"
        return config.get("public_key_field") or default
    if gen == "bcrypt_hash":
        return config.get("hash_field") or f"{name}_hash"
    return None


def validate_fields(fields: Any) -> list[dict]:
    """The normalised field list, or ValidationFailed naming each bad field (`fields[i].config.x`)."""
    if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELDS:
        raise ValidationFailed({"fields": f"must be a list of 1 to {MAX_FIELDS} fields"})
    problems: dict[str, str] = {}
    out: list[dict] = []
    names: set[str] = set()
    for i, field in enumerate(fields):
        where = f"fields[{i}]"
        if not isinstance(field, dict):
            problems[where] = "must be an object with name, generator and config"
            continue
        unknown = set(field) - {"name", "generator", "config"}
        if unknown:
            problems[where] = f"unknown keys: {', '.join(sorted(unknown))}"
        name, gen, config = field.get("name"), field.get("generator"), field.get("config") or {}
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            problems[f"{where}.name"] = "must be 1-64 characters: letters, digits, _ and - (not first)"
        if gen not in GENERATORS:
            problems[f"{where}.generator"] = f"must be one of {', '.join(GENERATORS)}"
            continue
        if not isinstance(config, dict):
            problems[f"{where}.config"] = "must be an object"
            continue
        extra = set(config) - _CONFIG_KEYS[gen]
        if extra:
            problems[f"{where}.config"] = f"unknown keys for {gen}: {', '.join(sorted(extra))}"
        _validate_config(gen, config, f"{where}.config", problems)
        normalised = {"name": name, "generator": gen, "config": dict(config)}
        for output in (name, second_output(normalised) if isinstance(name, str) else None):
            if output is None:
                continue
            if not isinstance(output, str) or not FIELD_NAME.match(output):
                problems[f"{where}.config"] = "output field names must be 1-64 letters, digits, _ or -"
                continue
            if output in names:
                problems[f"{where}.name"] = f"the output field {output!r} is produced twice"
            names.add(output)
        out.append(normalised)
    if problems:
        raise ValidationFailed(problems)
    return out


def _validate_config(gen: str, config: dict, where: str, problems: dict) -> None:
    if gen == "random":
        length = _int(config, "length", where, problems, 32, 1, MAX_LENGTH)
        charset = config.get("charset", "alphanumeric")
        if not isinstance(charset, str) or charset not in CHARSETS:
            problems[f"{where}.charset"] = f"must be one of {', '.join(CHARSETS)}"
            return
        required = [flag for flag in REQUIRE_CLASSES if config.get(flag)]
        for flag in REQUIRE_CLASSES:
            if flag in config and not isinstance(config[flag], bool):
                problems[f"{where}.{flag}"] = "must be true or false"
        for flag in required:
            if not any(REQUIRE_CLASSES[flag](c) for c in CHARSETS[charset]):
                problems[f"{where}.{flag}"] = f"the charset {charset} has no such character"
        if length is not None and len(required) > length:
            problems[f"{where}.length"] = f"must be at least {len(required)} to hold every required class"
    elif gen == "hex":
        _int(config, "length", where, problems, 32, 1, MAX_LENGTH)
    elif gen == "uuid":
        if config.get("version", 4) not in (4, 7):
            problems[f"{where}.version"] = "must be 4 or 7"
    elif gen == "template":
        template = config.get("template")
        if not isinstance(template, str) or not template or len(template) > MAX_LENGTH:
            problems[f"{where}.template"] = f"must be a non-empty string of at most {MAX_LENGTH} characters"
            return
        for m in TEMPLATE_TOKEN.finditer(template):
            kind, n = m.group(1), m.group(2)
            if kind in ("random", "hex"):
                if n is None or not 1 <= int(n) <= MAX_LENGTH:
                    problems[f"{where}.template"] = f"{{{{{kind}:N}}}} needs N between 1 and {MAX_LENGTH}"
            elif kind in ("uuid", "timestamp"):
                if n is not None:
                    problems[f"{where}.template"] = f"{{{{{kind}}}}} takes no argument"
            else:
                problems[f"{where}.template"] = f"unknown placeholder {{{{{kind}}}}}; use random:N, hex:N, uuid, timestamp"
        leftover = TEMPLATE_TOKEN.sub("", template)
        if "{{" in leftover or "}}" in leftover:
            problems.setdefault(f"{where}.template", "has a malformed placeholder")
    elif gen == "rsa_keypair":
        if config.get("bits", 2048) not in (2048, 4096):
            problems[f"{where}.bits"] = "must be 2048 or 4096"
    elif gen == "ec_keypair":
        if config.get("curve", "P-256") not in ("P-256", "P-384"):
            problems[f"{where}.curve"] = "must be P-256 or P-384"
    elif gen == "ssh_keypair":
        key_type = config.get("key_type", "ed25519")
        if key_type not in ("ed25519", "rsa"):
            problems[f"{where}.key_type"] = "must be ed25519 or rsa"
        if "bits" in config and (key_type != "rsa" or config["bits"] not in (2048, 3072, 4096)):
            problems[f"{where}.bits"] = "only for key_type rsa: 2048, 3072 or 4096"
        comment = config.get("comment", "")
        if not isinstance(comment, str) or len(comment) > 256 or any(c in comment for c in "\r\n"):
            problems[f"{where}.comment"] = "must be a single-line string of at most 256 characters"
    elif gen == "bcrypt_hash":
        _int(config, "length", where, problems, 24, 1, 72)       # bcrypt reads at most 72 bytes
        _int(config, "rounds", where, problems, 12, 4, 16)
        if not isinstance(config.get("charset", "alphanumeric"), str) or config.get("charset", "alphanumeric") not in CHARSETS:
            problems[f"{where}.charset"] = f"must be one of {', '.join(CHARSETS)}"
    elif gen == "static":
        value = config.get("value")
        if not isinstance(value, str) or len(value) > MAX_LENGTH:
            problems[f"{where}.value"] = f"must be a string of at most {MAX_LENGTH} characters"


# ------------------------------------------------------------------ generation
def random_string(length: int, charset: str = "alphanumeric", require: tuple[str, ...] = ()) -> str:
    """A uniformly chosen string over the charset holding a character of each required class."""
    alphabet = CHARSETS[charset]
    checks = [REQUIRE_CLASSES[flag] for flag in require]
    for _ in range(_REJECTION_ATTEMPTS):
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(check(c) for c in value) for check in checks):
            return value
    # astronomically unlikely for valid configs; place one of each class, then shuffle uniformly
    chars = [secrets.choice([c for c in alphabet if check(c)]) for check in checks]
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    for i in range(len(chars) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def random_hex(length: int) -> str:
    return secrets.token_hex((length + 1) // 2)[:length]


def uuid7() -> str:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 62) << 64           # 12 random bits (rand_a)
    value |= 0b10 << 62                   # variant
    value |= rand & ((1 << 62) - 1)       # 62 random bits (rand_b)
    return str(uuid.UUID(int=value))


def render_template(template: str) -> str:
    def substitute(m: re.Match) -> str:
        kind, n = m.group(1), m.group(2)
        if kind == "random":
            return random_string(int(n))
        if kind == "hex":
            return random_hex(int(n))
        if kind == "uuid":
            return str(uuid.uuid4())
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return TEMPLATE_TOKEN.sub(substitute, template)


def _keypair_pem(private_key) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    private = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    public = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def generate_field(field: dict) -> dict[str, str]:
    """The output(s) of one field: {name: value} or {name: private/password, second: public/hash}."""
    gen, name, config = field["generator"], field["name"], field.get("config") or {}
    if gen == "random":
        require = tuple(flag for flag in REQUIRE_CLASSES if config.get(flag))
        return {name: random_string(config.get("length", 32), config.get("charset", "alphanumeric"), require)}
    if gen == "hex":
        return {name: random_hex(config.get("length", 32))}
    if gen == "uuid":
        return {name: uuid7() if config.get("version", 4) == 7 else str(uuid.uuid4())}
    if gen == "template":
        return {name: render_template(config["template"])}
    if gen == "static":
        return {name: config["value"]}
    second = second_output(field)
    assert second is not None
    if gen == "rsa_keypair":
        from cryptography.hazmat.primitives.asymmetric import rsa

        private, public = _keypair_pem(rsa.generate_private_key(public_exponent=65537, key_size=config.get("bits", 2048)))
        return {name: private, second: public}
    if gen == "ec_keypair":
        from cryptography.hazmat.primitives.asymmetric import ec

        curve = ec.SECP384R1() if config.get("curve") == "P-384" else ec.SECP256R1()
        private, public = _keypair_pem(ec.generate_private_key(curve))
        return {name: private, second: public}
    if gen == "ssh_keypair":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        if config.get("key_type", "ed25519") == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=config.get("bits", 3072))
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        comment = config.get("comment") or ""
        return {name: private, second: f"{public} {comment}".rstrip()}
    if gen == "bcrypt_hash":
        import bcrypt

        password = random_string(config.get("length", 24), config.get("charset", "alphanumeric"))
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=config.get("rounds", 12))).decode()
        return {name: password, second: hashed}
    raise ValueError(f"unknown generator {gen}")


def generate(fields: list[dict]) -> dict[str, str]:
    """A fresh `data` object from a validated field list."""
    data: dict[str, str] = {}
    for field in fields:
        data.update(generate_field(field))
    return data


DEFAULT_RECIPE = [{"name": "value", "generator": "random", "config": {"length": 32, "charset": "alphanumeric"}}]
