"""Configuration: every variable read once into frozen Settings; bad values stop start-up with
exit status 2 and one line naming the variable; passwords in URLs never appear in output."""
from __future__ import annotations

import dataclasses

import pytest

from scaivault.config import ConfigError, DatabaseURL, load_settings, parse_duration, redact_url
from tests.foundation_support import free_port, run_cli

MINIMAL = {
    "DATABASE_URL": "postgresql://vault:pw@db.internal:5432/scaivault?sslmode=require",
    "REDIS_URL": "redis://cache:6379/0",
    "SCAIKEY_URL": "https://scaikey.example",
    "SCAIKEY_AUDIENCE": "scaivault",
    "BASE_URL": "https://vault.example",
    "KMS_PROVIDER": "local",
}


def settings(**overrides):
    return load_settings({**MINIMAL, **overrides})


def test_defaults_follow_the_deployment_guide():
    s = settings()
    assert s.bind_address == "0.0.0.0:8443"
    assert s.log_level == "info" and s.log_format == "json"
    assert s.migrate_on_start is True
    assert s.identity_sync_interval == 15 * 60
    assert s.max_request_bytes == 1024 * 1024
    assert s.storage_provider == "db"
    assert s.scaikey_audience == ("scaivault",)
    assert s.bootstrap_super_admin is None
    assert s.web_concurrency >= 1


def test_every_documented_variable_is_read():
    s = settings(
        DATABASE_URL_READ="postgresql://ro@replica:5433/scaivault",
        REDIS_URL="rediss://:pw@cache:6380/2",
        SCAIKEY_JWKS_URL="https://scaikey.example/.well-known/jwks.json",
        SCAIKEY_AUDIENCE="scaivault, scaivault-cli",
        BIND_ADDRESS="127.0.0.1:9000",
        LOG_LEVEL="debug", LOG_FORMAT="text",
        KMS_PROVIDER="aws", KMS_KEY_ID="arn:aws:kms:us-east-1:1:key/a",
        KMS_KEY_ID_SECONDARY="arn:aws:kms:eu-west-1:1:key/b",
        STORAGE_PROVIDER="s3", STORAGE_BUCKET="b", STORAGE_REGION="us-east-1",
        IDENTITY_SYNC_WEBHOOK_SECRET="whsec", IDENTITY_SYNC_INTERVAL="1h",
        RATE_LIMITS="secrets:read:\n  rate: 2000\n  window: 1m\n",
        BOOTSTRAP_SUPER_ADMIN="user:admin@acme.example",
        MIGRATE_ON_START="false", WEB_CONCURRENCY="4",
    )
    assert s.database_url_read.host == "replica" and s.database_url_read.port == 5433
    assert s.redis_url.startswith("rediss://")
    assert s.scaikey_audience == ("scaivault", "scaivault-cli")
    assert s.bind_address == "127.0.0.1:9000"
    assert (s.log_level, s.log_format) == ("debug", "text")
    assert s.kms_provider == "aws" and s.kms_options["KMS_KEY_ID"].endswith("key/a")
    assert s.kms_key_id_secondary.endswith("key/b")
    assert s.storage_provider == "s3" and s.storage_options["STORAGE_BUCKET"] == "b"
    assert s.identity_sync_interval == 3600
    assert s.rate_limits["secrets:read"] == {"rate": 2000, "window": 60}
    assert s.bootstrap_super_admin == "user:admin@acme.example"
    assert s.migrate_on_start is False and s.web_concurrency == 4


def test_settings_are_frozen():
    s = settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.log_level = "debug"  # type: ignore[misc]


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("48h", 172800), ("90d", 7776000)])
def test_durations_accept_seconds_minutes_hours_and_days(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15", "15 minutes", "1h30m", "-5m", "m", ""])
def test_malformed_durations_are_rejected(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_database_url_carries_sslmode_and_hides_the_password():
    url = DatabaseURL.parse("DATABASE_URL", "postgresql://vault:s3cr%40t@db:5432/sv?sslmode=verify-full&sslrootcert=/ca.pem")
    assert (url.user, url.password, url.host, url.port, url.database) == ("vault", "s3cr@t", "db", 5432, "sv")
    assert url.sslmode == "verify-full" and url.sslrootcert == "/ca.pem"
    assert "s3cr" not in repr(url) and "s3cr" not in url.redacted and "***" in url.redacted


def test_database_url_accepts_a_unix_socket_directory():
    url = DatabaseURL.parse("DATABASE_URL", "postgresql://postgres@/scaivault?host=/run/pg&port=5433")
    assert url.unix_sock == "/run/pg/.s.PGSQL.5433" and url.host is None


def test_redact_url_masks_only_the_password():
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


@pytest.mark.parametrize("variable, value", [
    ("DATABASE_URL", "mysql://u@h/db"),
    ("DATABASE_URL", "postgresql://u@h:5432/db?sslmode=sometimes"),
    ("DATABASE_URL", "postgresql://u@h:5432/"),
    ("DATABASE_URL_READ", "postgres-ro://replica/db"),
    ("REDIS_URL", "http://cache:6379"),
    ("REDIS_URL", "redis://cache:6379/zero"),
    ("SCAIKEY_URL", "scaikey.example"),
    ("SCAIKEY_JWKS_URL", "ftp://scaikey/jwks"),
    ("BASE_URL", "vault.example"),
    ("BIND_ADDRESS", "8443"),
    ("BIND_ADDRESS", "0.0.0.0:99999"),
    ("LOG_LEVEL", "loud"),
    ("LOG_FORMAT", "xml"),
    ("IDENTITY_SYNC_INTERVAL", "soon"),
    ("RATE_LIMITS", "secrets:read: [unclosed"),
    ("RATE_LIMITS", "secrets:read:\n  rate: many\n"),
    ("MIGRATE_ON_START", "maybe"),
    ("WEB_CONCURRENCY", "0"),
    ("MAX_REQUEST_BYTES", "lots"),
    ("BOOTSTRAP_SUPER_ADMIN", "admin@acme.example"),
    ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
    ("TRUSTED_PROXIES", "10.0.0.0/8, the-load-balancer"),
])
def test_a_malformed_variable_is_named_in_the_error(variable, value):
    with pytest.raises(ConfigError) as caught:
        settings(**{variable: value})
    assert caught.value.variable == variable
    assert caught.value.problem


@pytest.mark.parametrize("variable", ["DATABASE_URL", "REDIS_URL", "SCAIKEY_URL", "BASE_URL", "KMS_PROVIDER"])
def test_a_missing_required_variable_is_named(variable):
    env = {k: v for k, v in MINIMAL.items() if k != variable}
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == variable and "required" in caught.value.problem


def test_tls_key_without_certificate_is_refused(tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(ConfigError) as caught:
        settings(TLS_KEY_FILE=str(key))
    assert caught.value.variable == "TLS_CERT_FILE"


def test_migrate_needs_only_the_database_url():
    s = load_settings({"DATABASE_URL": MINIMAL["DATABASE_URL"]}, require_services=False)
    assert s.redis_url is None and s.database_url.database == "scaivault"


# ------------------------------------------------------------------ the CLI's side: exit 2, one line

def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_serve_with_a_missing_variable_exits_2_with_one_line_naming_it():
    env = {k: v for k, v in MINIMAL.items() if k != "BASE_URL"}
    result = run_cli(["serve"], env)
    assert result.returncode == 2
    assert "BASE_URL" in _one_line(result.stderr)


def test_serve_without_scaikey_audience_exits_2_naming_it_but_dev_mode_does_not_need_it():
    env = {k: v for k, v in MINIMAL.items() if k != "SCAIKEY_AUDIENCE"}
    result = run_cli(["serve"], env)
    assert result.returncode == 2
    assert "SCAIKEY_AUDIENCE" in result.stderr
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert raised.value.variable == "SCAIKEY_AUDIENCE"
    assert load_settings(env, dev_mode=True).scaikey_audience == ()
    assert load_settings(env, require_services=False).scaikey_audience == ()   # migrate checks no tokens


def test_serve_with_a_malformed_variable_exits_2():
    result = run_cli(["serve"], {**MINIMAL, "IDENTITY_SYNC_INTERVAL": "every now and then"})
    assert result.returncode == 2
    assert "IDENTITY_SYNC_INTERVAL" in _one_line(result.stderr)


def test_a_password_in_a_bad_redis_url_never_appears_in_output():
    result = run_cli(["serve"], {**MINIMAL, "REDIS_URL": "redis://:Pa55wordXYZ@cache:notaport/0"})
    assert result.returncode == 2
    assert "REDIS_URL" in _one_line(result.stderr)
    assert "Pa55wordXYZ" not in result.stderr + result.stdout


def test_a_password_with_an_unescaped_slash_never_appears_in_output():
    result = run_cli(["migrate"], {"DATABASE_URL": "postgresql://vault:Zq9/Pa55wordXYZ@db:5432/scaivault"})
    assert result.returncode == 2
    assert "DATABASE_URL" in _one_line(result.stderr)
    assert "Pa55wordXYZ" not in result.stderr + result.stdout and "Zq9" not in result.stderr


def test_an_unreachable_database_is_reported_without_its_password():
    port = free_port()  # nothing listens here
    result = run_cli(["migrate"], {"DATABASE_URL": f"postgresql://vault:Pa55wordXYZ@127.0.0.1:{port}/scaivault"})
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert "Pa55wordXYZ" not in result.stderr + result.stdout
    assert f"127.0.0.1:{port}" in line and "***" in line
