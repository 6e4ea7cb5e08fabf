"""`scaivault keys rotate` and `scaivault keys status` against a real database."""
from __future__ import annotations

import json

from scaivault.cli import main
from scaivault.crypto import SealContext
from tests.fakes.keyrings import counting_keyring, migrated_database, settings_for


def test_keys_rotate_command_rewraps_partner_keys_and_is_audited(databases, base_env, tmp_path, capsys):
    db_url = migrated_database(databases)
    env = {**base_env, "DATABASE_URL": db_url, "KMS_LOCAL_KEY_FILE": str(tmp_path / "a.key")}
    ring, _ = counting_keyring(settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=env["KMS_LOCAL_KEY_FILE"]))
    ctx = SealContext("ptn_cli", "tnt_cli", "secret", "x", 1)
    sealed = ring.seal(ctx, b"cli value")
    env["KMS_LOCAL_KEY_FILE"] = str(tmp_path / "b.key")
    assert main(["keys", "rotate"], env) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "root" and result["version"] == 2 and result["rewrapped"] == 1
    audit = ring.db.one("SELECT action, identity_id FROM audit_log WHERE action = 'rotate' ORDER BY ts DESC LIMIT 1")
    assert audit == {"action": "rotate", "identity_id": "system:cli"}
    assert main(["keys", "status"], env) == 0
    status = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in status["roots"]] == ["active", "retired"]
    assert status["encryption"]["status"] == "ok"
    assert set(status["partners"][0]) == {"partner_id", "root_version", "has_secondary", "created_at",
                                          "rewrapped_at", "tenant_keys"}      # versions, never material
    fresh, _ = counting_keyring(settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=env["KMS_LOCAL_KEY_FILE"]))
    assert fresh.open(ctx, sealed) == b"cli value"
    assert main(["keys", "rotate", "--partner", "ptn_cli", "--tenant", "tnt_cli"], env) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2
    ring.db.close()
    fresh.db.close()


def test_keys_rotate_reports_a_running_rotation_and_exits_1(databases, base_env, tmp_path, capsys):
    from scaivault.crypto.rotation import ROTATION_LOCK_KEY

    db_url = migrated_database(databases)
    env = {**base_env, "DATABASE_URL": db_url, "KMS_LOCAL_KEY_FILE": str(tmp_path / "a.key")}
    ring, _ = counting_keyring(settings_for(base_env, db_url, KMS_LOCAL_KEY_FILE=env["KMS_LOCAL_KEY_FILE"]))
    ring.ensure_root()
    with ring.db.session() as s:
        s.scalar("SELECT pg_advisory_lock(:k)", k=ROTATION_LOCK_KEY)
        try:
            assert main(["keys", "rotate"], env) == 1
        finally:
            s.scalar("SELECT pg_advisory_unlock(:k)", k=ROTATION_LOCK_KEY)
    assert "rotation_in_progress" in capsys.readouterr().err
    assert main(["keys", "rotate", "--tenant", "t"], env) == 2
    ring.db.close()
