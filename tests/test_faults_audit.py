"""Every refused or failed tenant-data request has its audit entry, writes included: a write
refused by validation or by the KMS, and a write whose transaction rolled back its own entry
(recorded then in a transaction of its own)."""
from __future__ import annotations

import pytest

from scaivault.config import DatabaseURL
from scaivault.migrate import MigrationRunner
from tests.drills.harness import MotoProcess
from tests.secrets_support import Callers


@pytest.fixture
def own_database(databases) -> str:
    url = databases.create()
    MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
    return url


def entries(app, tenant: str, path: str) -> list[tuple[str, bool, str | None]]:
    rows = app.extensions["scaivault"].db.query(
        "SELECT action, success, extra_data->>'error' AS error FROM audit_log "
        "WHERE tenant_id = :t AND secret_path = :p ORDER BY ts, chain_seq", t=tenant, p=path)
    return [(r["action"], r["success"], r["error"]) for r in rows]


def test_a_write_refused_by_validation_has_its_entry(make_app, scaikey):
    app = make_app()
    caller = Callers(scaikey, app.test_client()).admin("tnt_fail_val")
    response = caller.put("/v1/secrets/bad", json={"data": "not an object"})
    assert response.status_code == 422
    assert entries(app, "tnt_fail_val", "bad") == [("write", False, "validation_error")]


def test_a_write_that_got_kms_unavailable_has_its_entry(make_app, own_database, scaikey):
    moto = MotoProcess().start()
    try:
        env = {"DATABASE_URL": own_database, "KMS_LOCAL_KEY_FILE": None, "KMS_TIMEOUT": "1", "KMS_RETRIES": "1",
               **moto.env(moto.create_key())}
        app = make_app(**env)
        app.extensions["scaivault"].keyring.ensure_root()
        caller = Callers(scaikey, app.test_client()).admin("tnt_fail_kms")
        moto.pause()
        try:
            response = caller.put("/v1/secrets/w", json={"data": {"v": 1}})
        finally:
            moto.resume()
        assert response.status_code == 503 and response.get_json()["error"]["code"] == "kms_unavailable"
        assert entries(app, "tnt_fail_kms", "w") == [("write", False, "kms_unavailable")]
    finally:
        moto.stop()


def test_a_write_whose_transaction_rolled_back_its_entry_is_audited_in_a_separate_transaction(
        make_app, own_database, scaikey):
    app = make_app(DATABASE_URL=own_database)
    db = app.extensions["scaivault"].db
    # the write's own (success) entry is refused; the failure entry written afterwards is not
    db.execute("""CREATE FUNCTION refuse_write_success() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN
                    IF NEW.action = 'write' AND NEW.success AND NEW.secret_path = 'rolled/back' THEN
                      RAISE EXCEPTION 'audit storage refused the row';
                    END IF;
                    RETURN NEW;
                  END $$""")
    db.execute("CREATE TRIGGER refuse_write_success BEFORE INSERT ON audit_log FOR EACH ROW "
               "EXECUTE FUNCTION refuse_write_success()")
    caller = Callers(scaikey, app.test_client()).admin("tnt_fail_tx")
    response = caller.put("/v1/secrets/rolled/back", json={"data": {"v": 1}})
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "audit_unavailable"
    # the write did not happen, and its failure is on record
    assert caller.get("/v1/secrets/rolled/back").status_code == 404
    assert entries(app, "tnt_fail_tx", "rolled/back")[0] == ("write", False, "audit_unavailable")
