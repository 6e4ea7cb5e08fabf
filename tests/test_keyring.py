"""The key hierarchy: sealing, context binding, caching, first boot and start-up verification."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from scaivault.config import ConfigError
from scaivault.crypto import SealContext, SealError, build_keyring
from scaivault.crypto.envelope import OVERHEAD
from scaivault.db import Database
from tests.fakes.keyrings import CountingDatabase, counting_keyring, migrated_database, settings_for


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


@pytest.fixture
def settings(base_env, db_url, tmp_path):
    return settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=str(tmp_path / "root.key"))


@pytest.fixture
def keyring(settings):
    ring, _ = counting_keyring(settings)
    yield ring
    ring.close()
    ring.db.close()


CTX = SealContext("ptn_acme", "tnt_blue", "secret", "db/prod/password", 3)


def test_sealed_value_opens_in_its_own_context(keyring):
    sealed = keyring.seal(CTX, b"hunter2")
    assert b"hunter2" not in sealed
    assert len(sealed) == len(b"hunter2") + OVERHEAD
    assert keyring.open(CTX, sealed) == b"hunter2"


def test_every_seal_uses_a_fresh_data_key_and_nonce(keyring):
    first, second = keyring.seal(CTX, b"same"), keyring.seal(CTX, b"same")
    assert first != second
    assert first[8:68] != second[8:68]          # wrapped data keys differ


def test_empty_and_large_values_round_trip(keyring):
    assert keyring.open(CTX, keyring.seal(CTX, b"")) == b""
    big = os.urandom(2 * 1024 * 1024)
    assert keyring.open(CTX, keyring.seal(CTX, big)) == big


@pytest.mark.parametrize("moved", [
    SealContext("ptn_acme", "tnt_green", "secret", "db/prod/password", 3),     # another tenant
    SealContext("ptn_other", "tnt_blue", "secret", "db/prod/password", 3),     # another partner
    SealContext("ptn_acme", "tnt_blue", "secret", "db/prod/password2", 3),     # another path
    SealContext("ptn_acme", "tnt_blue", "secret", "db/prod/password", 4),      # another version
    SealContext("ptn_acme", "tnt_blue", "webhook", "db/prod/password", 3),     # another kind
    SealContext("ptn_acme", None, "secret", "db/prod/password", 3),            # partner-owned
], ids=["tenant", "partner", "path", "version", "kind", "partner-owned"])
def test_a_value_moved_to_another_context_is_refused(keyring, moved):
    sealed = keyring.seal(CTX, b"hunter2")
    keyring.seal(moved, b"x")                    # the other context has keys of its own
    with pytest.raises(SealError) as info:
        keyring.open(moved, sealed)
    assert info.value.code == "decryption_failed"
    assert "hunter2" not in str(info.value)


def test_partner_owned_values_use_the_partner_scope(keyring):
    ctx = SealContext("ptn_acme", None, "secret", "shared/smtp", 1)
    assert keyring.open(ctx, keyring.seal(ctx, b"partner-wide")) == b"partner-wide"


def test_any_tampered_byte_is_refused(keyring):
    sealed = keyring.seal(CTX, b"hunter2")
    for position in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(SealError):
            keyring.open(CTX, bytes(tampered))


def test_truncated_or_foreign_bytes_are_refused(keyring):
    sealed = keyring.seal(CTX, b"hunter2")
    for bad in (sealed[:-1], sealed[:OVERHEAD - 1], b"", b"plaintext that was never sealed" * 4):
        with pytest.raises(SealError):
            keyring.open(CTX, bad)


def test_hot_path_open_makes_no_kms_call_and_no_query(settings):
    db = CountingDatabase(Database(settings.database_url, pool_size=2))
    ring, calls = counting_keyring(settings, db)
    sealed = ring.seal(CTX, b"hunter2")
    ring.open(CTX, sealed)
    before_calls, before_statements = dict(calls), db.statements
    for _ in range(50):
        assert ring.open(CTX, sealed) == b"hunter2"
        ring.seal(CTX, b"more")
    assert dict(calls) == before_calls
    assert db.statements == before_statements
    ring.close()
    db.close()


def test_cache_expiry_forces_a_fresh_unwrap(settings):
    now = [1000.0]
    ring, calls = counting_keyring(settings, clock=lambda: now[0])
    sealed = ring.seal(CTX, b"hunter2")
    ring.open(CTX, sealed)
    unwraps = calls["unwrap"]
    now[0] += settings.kms_cache_ttl - 1
    ring.open(CTX, sealed)
    assert calls["unwrap"] == unwraps                    # still cached
    now[0] += 2
    ring.open(CTX, sealed)
    assert calls["unwrap"] == unwraps + 1                # partner key unwrapped again by the KMS
    ring.close()
    ring.db.close()


def test_cache_ttl_comes_from_kms_cache_ttl(base_env, db_url, tmp_path):
    settings = settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=str(tmp_path / "k"), KMS_CACHE_TTL="30s")
    ring, _ = counting_keyring(settings)
    assert ring.cache.ttl == 30
    ring.db.close()


def test_cleared_cache_reopens_values_from_the_database(keyring):
    sealed = keyring.seal(CTX, b"hunter2")
    keyring.clear_cache()
    assert len(keyring.cache) == 0
    assert keyring.open(CTX, sealed) == b"hunter2"


def test_a_second_instance_reads_what_the_first_sealed(settings, keyring):
    sealed = keyring.seal(CTX, b"hunter2")
    other, _ = counting_keyring(settings)
    assert other.open(CTX, sealed) == b"hunter2"
    other.db.close()


def test_first_boot_creates_one_root_under_concurrent_starts(settings):
    rings = [counting_keyring(settings)[0] for _ in range(4)]
    errors = []

    def boot(ring):
        try:
            ring.ensure_root()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(r,)) for r in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert rings[0].db.scalar("SELECT count(*) FROM kms_roots") == 1
    assert {r.root.version for r in rings} == {1}
    for r in rings:
        r.db.close()


def test_first_boot_is_idempotent(keyring):
    first = keyring.ensure_root()
    assert keyring.ensure_root() == first


def test_start_up_with_a_wrong_key_is_refused_with_a_clear_message(settings, keyring, tmp_path):
    keyring.ensure_root()
    keyring.seal(CTX, b"hunter2")
    with open(settings.kms_options["KMS_LOCAL_KEY_FILE"], "wb") as handle:
        handle.write(os.urandom(32))
    other, _ = counting_keyring(settings)
    with pytest.raises(ConfigError) as info:
        other.ensure_root()
    assert info.value.variable == "KMS_LOCAL_KEY_FILE"
    assert "cannot open the stored encryption root" in info.value.problem
    other.db.close()


def test_the_cli_exits_non_zero_on_a_wrong_key(settings, base_env, keyring):
    keyring.ensure_root()
    with open(settings.kms_options["KMS_LOCAL_KEY_FILE"], "wb") as handle:
        handle.write(os.urandom(32))
    from scaivault.cli import prepare_database

    with pytest.raises(ConfigError):
        prepare_database(settings, migrate=True)


def test_local_key_file_is_created_with_mode_0600(settings, keyring):
    keyring.ensure_root()
    mode = os.stat(settings.kms_options["KMS_LOCAL_KEY_FILE"]).st_mode & 0o777
    assert mode == 0o600
    assert os.path.getsize(settings.kms_options["KMS_LOCAL_KEY_FILE"]) == 32


def test_a_key_file_of_the_wrong_size_is_a_configuration_error(base_env, db_url, tmp_path):
    path = tmp_path / "short.key"
    path.write_bytes(b"too short")
    settings = settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=str(path))
    ring, _ = counting_keyring(settings)
    with pytest.raises(ConfigError) as info:
        ring.ensure_root()
    assert info.value.variable == "KMS_LOCAL_KEY_FILE"
    ring.db.close()


def test_unknown_kms_provider_fails_listing_the_installed_ones(base_env, db_url):
    settings = settings_for(base_env, db_url, KMS_PROVIDER="nosuchkms")
    with pytest.raises(ConfigError) as info:
        build_keyring(settings, Database(settings.database_url))
    assert info.value.variable == "KMS_PROVIDER"
    assert "nosuchkms" in info.value.problem and "local" in info.value.problem


def test_health_reports_ok_with_the_active_key(keyring):
    keyring.ensure_root()
    health = keyring.health()
    assert health["status"] == "ok"
    assert health["key_status"] == "active"
    assert health["root_version"] == 1


def test_no_plaintext_appears_in_a_database_dump(settings, keyring, db_url):
    marker = b"PLAINTEXT-MARKER-7f3a9c"
    tenants = [SealContext("ptn_dump", f"tnt_{i}", "secret", f"app/{i}", 1) for i in range(5)]
    sealed = [keyring.seal(ctx, marker + b"-" + str(i).encode()) for i, ctx in enumerate(tenants)]
    keyring.db.execute("CREATE TABLE dump_probe (id serial, sealed bytea)")
    for value in sealed:
        keyring.db.execute("INSERT INTO dump_probe (sealed) VALUES (:v)", v=value)
    with open(settings.kms_options["KMS_LOCAL_KEY_FILE"], "rb") as handle:
        root_key = handle.read()
    dump = subprocess.run(["pg_dump", "-h", settings.database_url.host, "-p", str(settings.database_url.port),
                           "-U", settings.database_url.user, settings.database_url.database],
                          capture_output=True, check=True).stdout
    assert b"dump_probe" in dump
    assert marker not in dump
    assert marker.hex().encode() not in dump
    assert root_key.hex().encode() not in dump


def test_scaivault_serve_refuses_to_start_with_a_wrong_key(settings, base_env, keyring, db_url):
    keyring.ensure_root()
    key_file = settings.kms_options["KMS_LOCAL_KEY_FILE"]
    with open(key_file, "wb") as handle:
        handle.write(os.urandom(32))
    env = {**os.environ, **base_env, "DATABASE_URL": db_url, "KMS_LOCAL_KEY_FILE": key_file,
           "BIND_ADDRESS": "127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "scaivault.cli", "serve", "--no-migrate"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "KMS_LOCAL_KEY_FILE" in done.stderr and "cannot open the stored encryption root" in done.stderr


def test_kms_calls_are_timed_in_the_kms_latency_metric(keyring):
    from scaivault import metrics

    def count(operation):
        return next(sample.value for family in metrics.KMS_LATENCY.collect() for sample in family.samples
                    if sample.name.endswith("_count") and sample.labels.get("operation") == operation)

    keyring.ensure_root()
    before = count("decrypt")
    keyring.seal(CTX, b"x")
    keyring.clear_cache()
    keyring.open(CTX, keyring.seal(CTX, b"y"))
    assert count("decrypt") > before


def test_a_stored_secret_copied_to_another_tenant_or_version_fails_to_open(settings, keyring):
    from scaivault.audit import AuditEntry
    from scaivault.runtime import Runtime
    from scaivault.services.secrets import SecretOwner, WriteRequest

    rt = Runtime(settings)
    blue, green = SecretOwner("ptn_acme", "tnt_blue"), SecretOwner("ptn_acme", "tnt_green")

    def audit_for(owner):
        return lambda action, secret_path=None, success=True, extra=None: AuditEntry(
            action=action, tenant_id=owner.tenant_id, partner_id=owner.partner_id, identity_type="system",
            identity_id="system:test", secret_path=secret_path, success=success, extra_data=dict(extra or {}))

    try:
        for owner in (blue, green):
            for n in (1, 2):
                rt.secret_store.write(owner, "db/password", WriteRequest(data={"pw": f"{owner.tenant_id}-{n}"}),
                                      "system:test", audit_for(owner))
        rows = rt.db.query("SELECT v.id, v.tenant_id, v.version, v.sealed_data FROM secret_versions v "
                           "JOIN secrets s ON s.id = v.secret_id WHERE s.path = 'db/password' AND v.tenant_id IN "
                           "('tnt_blue', 'tnt_green')")
        by = {(r["tenant_id"], r["version"]): r for r in rows}
        # another tenant's ciphertext pasted into green's row
        rt.db.execute("UPDATE secret_versions SET sealed_data = :s WHERE id = :i",
                      s=by[("tnt_blue", 2)]["sealed_data"], i=by[("tnt_green", 2)]["id"])
        with pytest.raises(SealError):
            rt.secret_store.read(green, "db/password", 2, audit_for(green))
        # an older version's ciphertext pasted into a newer version of the same secret
        rt.db.execute("UPDATE secret_versions SET sealed_data = :s WHERE id = :i",
                      s=by[("tnt_blue", 1)]["sealed_data"], i=by[("tnt_blue", 2)]["id"])
        with pytest.raises(SealError):
            rt.secret_store.read(blue, "db/password", 2, audit_for(blue))
        assert rt.secret_store.read(blue, "db/password", 1, audit_for(blue))["data"] == {"pw": "tnt_blue-1"}
    finally:
        rt.close()


def test_concurrent_opens_on_a_cold_cache_make_one_kms_call(settings):
    ring, calls = counting_keyring(settings)
    sealed = ring.seal(CTX, b"hunter2")
    ring.clear_cache()
    ring.ensure_root()
    before = calls["unwrap"]
    results, barrier = [], threading.Barrier(8)

    def reader():
        barrier.wait()
        results.append(ring.open(CTX, sealed))

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"hunter2"] * 8
    assert calls["unwrap"] - before == 1
    ring.db.close()
