"""Root and tenant key rotation, and failover to the secondary KMS key (local provider)."""
from __future__ import annotations

import os
import shutil

import pytest

from scaivault.crypto import SealContext, register_sealed_column
from scaivault.crypto.errors import KmsUnavailable
from scaivault.crypto.rotation import ROTATION_LOCK_KEY, rotate_root, rotate_tenant_key
from scaivault.crypto.sealed_columns import _REGISTRY
from scaivault.errors import ScaiVaultError
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for


@pytest.fixture
def db_url(databases):
    return migrated_database(databases)


@pytest.fixture
def keys(tmp_path):
    return {"a": str(tmp_path / "a.key"), "b": str(tmp_path / "b.key"), "c": str(tmp_path / "c.key")}


def ring_for(base_env, db_url, key_file, **env):
    settings = settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=key_file, **env)
    ring, calls = counting_keyring(settings)
    return ring, calls


CONTEXTS = [SealContext(f"ptn_{p}", f"tnt_{p}{t}", "secret", f"app/{t}", 1) for p in "xyz" for t in "12"]


def seal_into_probe(ring) -> dict[int, bytes]:
    ring.db.execute("CREATE TABLE IF NOT EXISTS probe (id serial PRIMARY KEY, partner_id text, tenant_id text, "
                    "kind text, path text, version int, sealed bytea)")
    for ctx in CONTEXTS:
        ring.db.execute("INSERT INTO probe (partner_id, tenant_id, kind, path, version, sealed) "
                        "VALUES (:p, :t, :k, :o, :v, :s)", p=ctx.partner_id, t=ctx.tenant_id, k=ctx.kind,
                        o=ctx.object_id, v=ctx.version, s=ring.seal(ctx, f"value of {ctx.object_id}".encode()))
    return {r["id"]: bytes(r["sealed"]) for r in ring.db.query("SELECT id, sealed FROM probe")}


def read_probe(ring) -> list[bytes]:
    rows = ring.db.query("SELECT * FROM probe ORDER BY id")
    return [ring.open(SealContext(r["partner_id"], r["tenant_id"], r["kind"], r["path"], r["version"]), bytes(r["sealed"]))
            for r in rows]


def test_root_rotation_to_a_new_key_rewraps_partner_keys_and_no_sealed_row(base_env, db_url, keys):
    old, _ = ring_for(base_env, db_url, keys["a"])
    before = seal_into_probe(old)
    new, _ = ring_for(base_env, db_url, keys["b"])
    result = rotate_root(new, actor="user:ops@example.com")
    assert result.version == 2 and result.rewrapped == 3 and not result.resumed
    assert {r["status"] for r in new.db.query("SELECT status FROM kms_roots ORDER BY version")} == {"retired", "active"}
    assert new.db.scalar("SELECT count(*) FROM partner_keys WHERE root_version = 2") == 3
    os.remove(keys["a"])                               # the old key is gone: nothing needs it any more
    fresh, _ = ring_for(base_env, db_url, keys["b"])
    fresh.ensure_root()
    assert read_probe(fresh) == [f"value of app/{t}".encode() for p in "xyz" for t in "12"]
    after = {r["id"]: bytes(r["sealed"]) for r in fresh.db.query("SELECT id, sealed FROM probe")}
    assert after == before                             # no sealed value was rewritten
    journal = fresh.db.one("SELECT kind, status, requested_by, progress FROM key_rotations")
    assert journal["status"] == "completed" and journal["requested_by"] == "user:ops@example.com"
    for ring in (old, new, fresh):
        ring.db.close()


def test_root_rotation_under_the_same_key_rewraps_in_place(base_env, db_url, keys):
    ring, _ = ring_for(base_env, db_url, keys["a"])
    seal_into_probe(ring)
    result = rotate_root(ring)
    assert result.rewrapped == 3 and result.version == 2
    assert len(ring.cache) == 0                        # rotation clears the key cache
    assert read_probe(ring)[0] == b"value of app/1"
    ring.db.close()


def test_an_interrupted_root_rotation_resumes_where_it_stopped(base_env, db_url, keys):
    old, _ = ring_for(base_env, db_url, keys["a"])
    seal_into_probe(old)
    new, _ = ring_for(base_env, db_url, keys["b"])
    provider = new.primary
    real_wrap, calls = provider.wrap, []

    def flaky_wrap(plaintext, aad):
        calls.append(1)
        if len(calls) == 3:                            # root check, one partner key, then the KMS drops
            raise KmsUnavailable("connection reset")
        return real_wrap(plaintext, aad)

    provider.wrap = flaky_wrap
    with pytest.raises(KmsUnavailable):
        rotate_root(new)
    assert new.db.scalar("SELECT count(*) FROM partner_keys WHERE root_version = 2") == 1
    assert new.db.scalar("SELECT status FROM kms_roots WHERE version = 2") == "rotating"
    assert read_probe(new)[0] == b"value of app/1"     # readable mid-rotation
    provider.wrap = real_wrap
    result = rotate_root(new)
    assert result.resumed and result.version == 2 and result.rewrapped == 2
    assert new.db.scalar("SELECT count(*) FROM partner_keys WHERE root_version = 2") == 3
    assert [r["status"] for r in new.db.query("SELECT status FROM key_rotations ORDER BY id")] == ["failed", "completed"]
    old.db.close()
    new.db.close()


def test_a_second_rotation_while_one_runs_is_refused(base_env, db_url, keys):
    ring, _ = ring_for(base_env, db_url, keys["a"])
    ring.ensure_root()
    with ring.db.session() as s:
        s.scalar("SELECT pg_advisory_lock(:k)", k=ROTATION_LOCK_KEY)
        try:
            with pytest.raises(ScaiVaultError) as info:
                rotate_root(ring)
            assert info.value.code == "rotation_in_progress" and info.value.status == 409
        finally:
            s.scalar("SELECT pg_advisory_unlock(:k)", k=ROTATION_LOCK_KEY)
    ring.db.close()


@pytest.fixture
def probe_column():
    register_sealed_column("probe", "sealed")
    yield
    _REGISTRY.pop(("probe", "sealed"), None)


def test_tenant_key_rotation_rewraps_only_the_data_keys_of_that_tenant(base_env, db_url, keys, probe_column):
    ring, _ = ring_for(base_env, db_url, keys["a"])
    before = seal_into_probe(ring)
    result = rotate_tenant_key(ring, "ptn_x", "tnt_x1")
    assert result.version == 2 and result.rewrapped == 1
    rows = {r["id"]: (r["tenant_id"], bytes(r["sealed"])) for r in ring.db.query("SELECT * FROM probe")}
    for row_id, (tenant, sealed) in rows.items():
        if tenant == "tnt_x1":
            assert sealed[4:8] == (2).to_bytes(4, "big")          # now under tenant key version 2
            assert sealed[68:] == before[row_id][68:]             # payload ciphertext untouched
        else:
            assert sealed == before[row_id]
    ring.clear_cache()
    assert read_probe(ring) == [f"value of app/{t}".encode() for p in "xyz" for t in "12"]
    new_value = ring.seal(CONTEXTS[0], b"after rotation")
    assert new_value[4:8] == (2).to_bytes(4, "big")
    assert ring.db.query("SELECT version, status FROM tenant_keys WHERE tenant_id = 'tnt_x1' ORDER BY version") == [
        {"version": 1, "status": "retired"}, {"version": 2, "status": "active"}]
    ring.db.close()


def test_tenant_rotation_can_run_again(base_env, db_url, keys, probe_column):
    ring, _ = ring_for(base_env, db_url, keys["a"])
    seal_into_probe(ring)
    rotate_tenant_key(ring, "ptn_y", "tnt_y2")
    assert rotate_tenant_key(ring, "ptn_y", "tnt_y2").version == 3
    assert read_probe(ring)[3] == b"value of app/2"
    ring.db.close()


def test_unwrap_falls_back_to_the_secondary_key_when_the_primary_is_unreachable(base_env, db_url, keys):
    ring, _ = ring_for(base_env, db_url, keys["a"], KMS_KEY_ID_SECONDARY=keys["c"])
    seal_into_probe(ring)
    assert ring.db.scalar("SELECT count(*) FROM partner_keys WHERE wrapped_secondary IS NOT NULL") == 3
    os.remove(keys["a"])
    os.mkdir(keys["a"])                                # the primary key can no longer be read
    try:
        degraded, _ = ring_for(base_env, db_url, keys["a"], KMS_KEY_ID_SECONDARY=keys["c"])
        degraded.ensure_root()                          # starts, on the secondary key
        assert read_probe(degraded)[0] == b"value of app/1"
        health = degraded.health()
        assert health["status"] == "degraded" and health["key_status"] == "secondary"
        degraded.db.close()
    finally:
        os.rmdir(keys["a"])
    ring.db.close()


def test_readiness_reports_encryption_degraded_on_the_secondary_key(base_env, db_url, keys, make_app):
    ring, _ = ring_for(base_env, db_url, keys["a"], KMS_KEY_ID_SECONDARY=keys["c"])
    ring.ensure_root()
    shutil.move(keys["a"], keys["a"] + ".away")
    os.mkdir(keys["a"])
    try:
        app = make_app(DATABASE_URL=db_url, KMS_LOCAL_KEY_FILE=keys["a"], KMS_KEY_ID_SECONDARY=keys["c"])
        response = app.test_client().get("/v1/health/ready")
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["checks"]["encryption"] == "degraded"
    finally:
        os.rmdir(keys["a"])
    ring.db.close()


def test_readiness_reports_encryption_error_when_no_key_answers(base_env, db_url, keys, make_app):
    ring, _ = ring_for(base_env, db_url, keys["a"])
    ring.ensure_root()
    with open(keys["a"], "wb") as handle:
        handle.write(os.urandom(32))
    app = make_app(DATABASE_URL=db_url, KMS_LOCAL_KEY_FILE=keys["a"])
    response = app.test_client().get("/v1/health/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["encryption"] == "error"
    assert "cannot open the encryption root" in body["errors"]["encryption"]
    ring.db.close()


def test_another_instance_picks_up_a_rotation_within_the_cache_ttl(base_env, db_url, keys):
    now = [1000.0]
    settings = settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=keys["a"])
    stale, _ = counting_keyring(settings, clock=lambda: now[0])
    stale.seal(CONTEXTS[0], b"before")
    rotator, _ = ring_for(base_env, db_url, keys["a"])
    rotate_root(rotator)
    now[0] += settings.kms_cache_ttl + 1
    stale.seal(SealContext("ptn_new", "tnt_new", "secret", "x", 1), b"after")
    assert stale.root.version == 2
    assert stale.db.scalar("SELECT root_version FROM partner_keys WHERE partner_id = 'ptn_new'") == 2
    stale.db.close()
    rotator.db.close()


def test_tenant_rotation_rewraps_detached_envelopes_and_leaves_object_bodies(base_env, db_url, keys):
    from scaivault.runtime import Runtime

    rt = Runtime(settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=keys["a"]))
    ctx = SealContext("ptn_det", "tnt_det", "artifact", "crl/1", 1)
    rt.db.execute("CREATE TABLE probe (id serial PRIMARY KEY, partner_id text, tenant_id text, envelope bytea)")
    register_sealed_column("probe", "envelope")
    try:
        envelope = rt.storage.put_detached(ctx, "crl/1", b"revocations")
        rt.db.execute("INSERT INTO probe (partner_id, tenant_id, envelope) VALUES ('ptn_det', 'tnt_det', :e)", e=envelope)
        body = rt.storage.get("crl/1")
        assert rotate_tenant_key(rt.keyring, "ptn_det", "tnt_det").rewrapped == 1
        new_envelope = bytes(rt.db.scalar("SELECT envelope FROM probe"))
        assert new_envelope != envelope and new_envelope[4:8] == (2).to_bytes(4, "big")
        assert rt.storage.get("crl/1") == body
        assert rt.storage.get_detached(ctx, "crl/1", new_envelope) == b"revocations"
    finally:
        _REGISTRY.pop(("probe", "envelope"), None)
        rt.close()


def test_tenant_rotation_rewraps_stored_secret_versions(base_env, db_url, keys):
    from scaivault.audit import AuditEntry
    from scaivault.runtime import Runtime
    from scaivault.services.secrets import SecretOwner, WriteRequest

    rt = Runtime(settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=keys["a"]))
    owner = SecretOwner("ptn_sec", "tnt_sec")

    def audit(action, secret_path=None, success=True, extra=None):
        return AuditEntry(action=action, tenant_id=owner.tenant_id, partner_id=owner.partner_id,
                          identity_type="system", identity_id="system:test", secret_path=secret_path,
                          success=success, extra_data=dict(extra or {}))

    try:
        store = rt.secret_store
        for n in range(3):
            store.write(owner, "db/password", WriteRequest(data={"password": f"pw-{n}"}), "system:test", audit)
        before = {r["version"]: bytes(r["sealed_data"]) for r in
                  rt.db.query("SELECT version, sealed_data FROM secret_versions WHERE tenant_id = 'tnt_sec'")}
        result = rotate_tenant_key(rt.keyring, "ptn_sec", "tnt_sec")
        assert result.details["columns"]["secret_versions.sealed_data"] == 3
        after = {r["version"]: bytes(r["sealed_data"]) for r in
                 rt.db.query("SELECT version, sealed_data FROM secret_versions WHERE tenant_id = 'tnt_sec'")}
        for version, sealed in after.items():
            assert sealed[4:8] == (2).to_bytes(4, "big") and sealed[68:] == before[version][68:]
        rt.keyring.clear_cache()
        assert store.read(owner, "db/password", 1, audit)["data"] == {"password": "pw-0"}
        assert store.read(owner, "db/password", None, audit)["data"] == {"password": "pw-2"}
    finally:
        rt.close()


def test_a_secondary_key_added_later_is_applied_by_a_rotation(base_env, db_url, keys, caplog):
    ring, _ = ring_for(base_env, db_url, keys["a"])
    seal_into_probe(ring)
    with_secondary, _ = ring_for(base_env, db_url, keys["a"], KMS_KEY_ID_SECONDARY=keys["c"])
    with caplog.at_level("WARNING", logger="scaivault.crypto"):
        with_secondary.ensure_root()
    assert "KMS_KEY_ID_SECONDARY differs" in caplog.text
    rotate_root(with_secondary)
    assert with_secondary.db.scalar("SELECT count(*) FROM partner_keys WHERE wrapped_secondary IS NULL") == 0
    assert with_secondary.root.secondary_key_ref == os.path.abspath(keys["c"])
    ring.db.close()
    with_secondary.db.close()


def test_an_unreadable_value_is_reported_and_does_not_block_a_tenant_rotation(base_env, db_url, keys, probe_column):
    ring, _ = ring_for(base_env, db_url, keys["a"])
    seal_into_probe(ring)
    ring.db.execute("INSERT INTO probe (partner_id, tenant_id, kind, path, version, sealed) "
                    "SELECT partner_id, tenant_id, kind, 'damaged', version, "
                    "overlay(sealed placing '\\x00000000'::bytea from 20) FROM probe WHERE tenant_id = 'tnt_x1'")
    result = rotate_tenant_key(ring, "ptn_x", "tnt_x1")
    assert result.rewrapped == 1 and result.details["unreadable"] == 1
    assert ring.db.scalar("SELECT status FROM key_rotations WHERE kind = 'tenant'") == "completed"
    ring.db.close()
