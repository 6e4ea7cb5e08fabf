"""Value generators of secret policies (spec/20 6.2): every generator, its validation, its output."""
from __future__ import annotations

import re
import uuid

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from scaivault.errors import ValidationFailed
from scaivault.lifecycle.generators import CHARSETS, generate, random_string, uuid7, validate_fields


def one(generator: str, **config) -> dict:
    return generate(validate_fields([{"name": "v", "generator": generator, "config": config}]))


@pytest.mark.parametrize("charset", sorted(CHARSETS))
def test_random_uses_only_its_charset_at_the_requested_length(charset):
    value = one("random", length=64, charset=charset)["v"]
    assert len(value) == 64 and set(value) <= set(CHARSETS[charset])


def test_random_honours_every_require_flag_even_for_the_shortest_length():
    for _ in range(50):
        value = one("random", length=4, charset="ascii_printable", require_upper=True, require_lower=True,
                    require_digit=True, require_symbol=True)["v"]
        assert any(c.isupper() for c in value) and any(c.islower() for c in value)
        assert any(c.isdigit() for c in value) and any(not c.isalnum() for c in value)


def test_random_strings_are_spread_over_the_whole_charset():
    seen = set("".join(random_string(200, "alphanumeric") for _ in range(20)))
    assert seen == set(CHARSETS["alphanumeric"])


@pytest.mark.parametrize("config,field", [
    ({"length": 0}, "fields[0].config.length"),
    ({"charset": "emoji"}, "fields[0].config.charset"),
    ({"charset": "numeric", "require_upper": True}, "fields[0].config.require_upper"),
    ({"charset": "alpha", "require_symbol": True}, "fields[0].config.require_symbol"),
    ({"length": 2, "require_upper": True, "require_lower": True, "require_digit": True}, "fields[0].config.length"),
])
def test_invalid_random_configs_are_refused_naming_the_field(config, field):
    with pytest.raises(ValidationFailed) as info:
        validate_fields([{"name": "v", "generator": "random", "config": config}])
    assert field in info.value.details["fields"]


def test_hex_and_uuids():
    assert re.fullmatch(r"[0-9a-f]{17}", one("hex", length=17)["v"])
    assert uuid.UUID(one("uuid", version=4)["v"]).version == 4
    v7 = uuid.UUID(uuid7())
    assert v7.version == 7 and v7.variant == uuid.RFC_4122
    with pytest.raises(ValidationFailed):
        validate_fields([{"name": "v", "generator": "uuid", "config": {"version": 5}}])


def test_template_substitutes_every_placeholder():
    value = one("template", template="key_{{random:8}}-{{hex:4}}-{{uuid}}-{{timestamp}}")["v"]
    m = re.fullmatch(r"key_([A-Za-z0-9]{8})-([0-9a-f]{4})-([0-9a-f-]{36})-(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)", value)
    assert m, value
    for bad in ("{{random}}", "{{nope}}", "{{uuid:3}}", "{{random:0}}", "{{hex:9"):
        with pytest.raises(ValidationFailed):
            validate_fields([{"name": "v", "generator": "template", "config": {"template": bad}}])


def test_rsa_and_ec_keypairs_are_matching_pem_pairs():
    out = generate(validate_fields([{"name": "private_key", "generator": "rsa_keypair", "config": {"bits": 2048}}]))
    key = serialization.load_pem_private_key(out["private_key"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    public = serialization.load_pem_public_key(out["public_key"].encode())
    assert public.public_numbers() == key.public_key().public_numbers()
    out = one("ec_keypair", curve="P-384")
    key = serialization.load_pem_private_key(out["v"].encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert serialization.load_pem_public_key(out["v_public"].encode()).public_numbers() == key.public_key().public_numbers()


def test_ssh_keypairs_are_openssh_format_with_the_comment():
    out = one("ssh_keypair", key_type="ed25519", comment="deploy@ci")
    key = serialization.load_ssh_private_key(out["v"].encode(), None)
    assert out["v"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert out["v_public"].startswith("ssh-ed25519 ") and out["v_public"].endswith(" deploy@ci")
    loaded = serialization.load_ssh_public_key(out["v_public"].rsplit(" ", 1)[0].encode())
    assert loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == \
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    out = one("ssh_keypair", key_type="rsa", bits=2048)
    assert out["v_public"].startswith("ssh-rsa ")


def test_bcrypt_hash_gives_a_password_and_its_hash():
    out = one("bcrypt_hash", length=20, rounds=4)
    assert len(out["v"]) == 20 and bcrypt.checkpw(out["v"].encode(), out["v_hash"].encode())
    assert out["v_hash"].startswith("$2b$04$")
    with pytest.raises(ValidationFailed):
        validate_fields([{"name": "v", "generator": "bcrypt_hash", "config": {"length": 100}}])


def test_static_and_duplicate_outputs():
    assert one("static", value="fixed")["v"] == "fixed"
    with pytest.raises(ValidationFailed) as info:
        validate_fields([{"name": "a", "generator": "static", "config": {"value": "x"}},
                         {"name": "a", "generator": "hex", "config": {}}])
    assert "fields[1].name" in info.value.details["fields"]
    with pytest.raises(ValidationFailed):
        validate_fields([{"name": "a", "generator": "nope", "config": {}}])
