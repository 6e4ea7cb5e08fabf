"""The deployment guide's recovery drill, automated: pg_dump, restore into a new database, start a
new instance on it with the same KMS key, read every secret at every version, verify the chain."""
from __future__ import annotations

import secrets
import time

import pytest
import requests

from scaivault.audit.chain import verify_chain
from scaivault.config import DatabaseURL
from scaivault.db import Database
from tests.drills.harness import Instance, MotoProcess, PrivatePostgres

TENANT = "tnt_recovery"


@pytest.mark.slow
def test_a_restored_dump_read_by_a_new_instance_with_the_same_kms_key(base_env, scaikey, tmp_path):
    cluster = PrivatePostgres().start()
    kms = MotoProcess().start()
    try:
        key_id = kms.create_key()
        source = cluster.create_database()
        env = {**base_env, **kms.env(key_id), "DATABASE_URL": cluster.url(source)}
        env.pop("KMS_LOCAL_KEY_FILE")
        token = scaikey.mint(sub="usr_rec", email="rec@recovery.example", tenant_id=TENANT, partner_id="ptn_rec",
                             scopes=("secrets:read", "secrets:write"), role="tenant_admin")
        auth = {"Authorization": f"Bearer {token}"}
        written: dict[tuple[str, int], str] = {}
        original = Instance(env, workers=1).start()
        try:
            for i in range(20):
                for _ in range(1 + i % 3):              # some secrets have several versions
                    value = secrets.token_hex(8)
                    response = requests.put(f"{original.url}/v1/secrets/rec/s{i}", json={"data": {"v": value}},
                                            headers=auth, timeout=10)
                    assert response.status_code in (200, 201), response.text
                    written[(f"rec/s{i}", response.json()["version"])] = value
        finally:
            original.stop()
        dump = tmp_path / "scaivault.dump"
        started = time.monotonic()
        cluster.dump(source, dump)
        target = cluster.create_database("restored_" + secrets.token_hex(3))
        cluster.restore(dump, target)
        restore_seconds = time.monotonic() - started

        restored = Instance({**env, "DATABASE_URL": cluster.url(target)}, workers=1)
        started = time.monotonic()
        restored.start()
        start_seconds = time.monotonic() - started
        try:
            session = requests.Session()
            session.headers.update(auth)
            for (path, version), value in written.items():
                response = session.get(f"{restored.url}/v1/secrets/{path}", params={"version": version}, timeout=10)
                assert response.status_code == 200, (path, version, response.text)
                assert response.json()["data"]["v"] == value
        finally:
            restored.stop()
        db = Database(DatabaseURL.parse("DATABASE_URL", cluster.url(target)), pool_size=1)
        try:
            report = verify_chain(db, TENANT)
        finally:
            db.close()
        assert report.valid and report.checked >= 2 * len(written), report.as_dict()
        print(f"\nRECOVERY secrets_versions={len(written)} dump_restore_s={restore_seconds:.2f} "
              f"new_instance_ready_s={start_seconds:.2f} audit_entries_verified={report.checked}")
    finally:
        kms.stop()
        cluster.destroy()
