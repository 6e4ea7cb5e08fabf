"""100,000 live leases must not slow start-up, a renew, or a sweep of the expired ones.

Uses the local PostgreSQL (a throwaway ScaiVault database and a target database with a
non-superuser root role) and the ScaiKey stand-in of tests/. Measures each operation with
no other leases, then again with 100,000 live (not yet due) leases of the same engine, and
shows the plan of the sweeper's query. Usage: python bench/dynamic_leases.py [N]
"""
from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaivault.app import create_app  # noqa: E402
from scaivault.config import DatabaseURL, load_settings  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from scaivault.services.dynamic import utcnow  # noqa: E402
from tests.conftest import Databases, REDIS_BASE  # noqa: E402
from tests.dynamic_support import PG_CREATION, PG_REVOCATION, PostgresTarget  # noqa: E402
from tests.scaikey_standin import ScaiKeyStandin  # noqa: E402
from tests.secrets_support import HIGH_RATE_LIMITS, Callers  # noqa: E402

SCOPES = ("secrets:read", "secrets:write", "dynamic:read", "dynamic:manage")


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(bulk: int = 100_000) -> None:
    dbs = Databases()
    target = PostgresTarget()
    standin = ScaiKeyStandin().start()
    issued: list[str] = []
    try:
        url = dbs.create()
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        env = {"DATABASE_URL": url, "REDIS_URL": f"{REDIS_BASE}/15", "SCAIKEY_URL": standin.url,
               "KMS_PROVIDER": "local", "KMS_LOCAL_KEY_FILE": f"/tmp/svbench-{target.database}.key",
               "LOG_LEVEL": "error", "RATE_LIMITS": HIGH_RATE_LIMITS, "BASE_URL": "http://127.0.0.1:8443"}

        def start_up() -> float:
            # a new process's app: build it and answer the first authenticated request
            started = time.perf_counter()
            app = create_app(load_settings(env))
            app.test_client().get("/v1/health/ready")
            elapsed = time.perf_counter() - started
            app.extensions["scaivault"].close()
            return elapsed

        app = create_app(load_settings(env))
        rt = app.extensions["scaivault"]
        admin = Callers(standin, app.test_client()).user("bench@acme.example", "tnt_bench", scopes=SCOPES,
                                                         role="tenant_admin")
        admin.put("/v1/secrets/infra/pg/root", json={"data": {"username": target.root_user,
                                                              "password": target.root_password}})
        assert admin.post("/v1/dynamic/engines", json={
            "name": "pg", "type": "database", "config": {"plugin": "postgresql", "connection_url": target.connection_url,
                                                         "root_credentials_path": "infra/pg/root"},
            "default_ttl": "1h", "max_ttl": "24h"}).status_code == 201
        assert admin.put("/v1/dynamic/engines/pg/roles/ro", json={"creation_statements": PG_CREATION,
                                                                  "revocation_statements": PG_REVOCATION}).status_code == 201

        def issue(ttl: str = "1h") -> dict:
            resp = admin.post("/v1/dynamic/engines/pg/creds/ro", json={"ttl": ttl})
            assert resp.status_code == 200, resp.get_json()
            creds = resp.get_json()
            issued.append(creds["data"]["username"])
            return creds

        def measure(label: str) -> dict:
            out: dict = {"label": label}
            out["start_up_ms"] = median_ms([start_up() for _ in range(9)])
            leases = [issue() for _ in range(30)]
            out["generate_ms"] = median_ms([timed(issue) for _ in range(20)])
            out["renew_ms"] = median_ms([timed(lambda lid=lease["lease_id"]: admin.post(
                f"/v1/leases/{lid}/renew", json={"increment": "2h"})) for lease in leases])
            out["lease_get_ms"] = median_ms([timed(lambda lid=lease["lease_id"]: admin.get(f"/v1/leases/{lid}"))
                                             for lease in leases])
            out["list_first_page_ms"] = median_ms([timed(lambda: admin.get("/v1/leases?limit=100")) for _ in range(10)])
            out["sweep_nothing_due_ms"] = median_ms([timed(lambda: rt.dynamic.sweep()) for _ in range(10)])
            due = [issue("1m") for _ in range(200)]
            later = utcnow() + timedelta(minutes=2)
            started = time.perf_counter()
            result = rt.dynamic.sweep(now=later)
            out["sweep_200_due_ms"] = round((time.perf_counter() - started) * 1000, 1)
            out["sweep_result"] = result
            assert result["revoked"] >= len(due), result
            out["refresh_gauges_ms"] = median_ms([timed(rt.dynamic.refresh_gauges) for _ in range(5)])
            for lease in leases:
                admin.post(f"/v1/leases/{lease['lease_id']}/revoke")
            return out

        before = measure("no other leases")
        engine_id = rt.db.scalar("SELECT id FROM dynamic_engines WHERE name = 'pg'")
        started = time.perf_counter()
        rt.db.execute(f"""INSERT INTO dynamic_leases (id, tenant_id, partner_id, engine_id, engine_name, role_name,
                              identity_id, owner_principal, username, issued_at, expires_at, max_expires_at, due_at)
                          SELECT 'pg/ro/bulk' || g, 'tnt_bench', 'ptn_test', :e, 'pg', 'ro', 'user:bulk@acme.example',
                                 'tnt_bench/usr_bulk', 'v_bulk_' || g, now(), now() + (1 + g % 24) * interval '1 hour',
                                 now() + interval '24 hours', now() + (1 + g % 24) * interval '1 hour'
                            FROM generate_series(1, {bulk}) g""", e=engine_id)
        rt.db.execute("ANALYZE dynamic_leases")
        print(f"inserted {bulk:,} live leases in {time.perf_counter() - started:.1f} s")
        after = measure(f"{bulk:,} live leases")
        plan = rt.db.query("""EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM dynamic_leases
                               WHERE due_at IS NOT NULL AND due_at <= now() ORDER BY due_at LIMIT 500""")
        sample = "pg/ro/bulk50000"
        lookup = rt.db.query("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM dynamic_leases WHERE id = :id",
                             id=sample)
        with rt.db.transaction() as s:
            renew_plan = s.query("""EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
                                    UPDATE dynamic_leases SET expires_at = now(), due_at = now(), renewed_at = now()
                                     WHERE id = :id AND state = 'active'""", id=sample)
            s.execute("ROLLBACK")
            s.execute("BEGIN")
        # the same again without the bulk: separates the leases' effect from the machine's noise
        rt.db.execute("DELETE FROM dynamic_leases WHERE id LIKE 'pg/ro/bulk%'")
        rt.db.execute("VACUUM ANALYZE dynamic_leases")
        again = measure("removed again")
        runs = (before, after, again)
        print("| measure | " + " | ".join(r["label"] for r in runs) + " |")
        print("|---|---|---|---|")
        for key in ("start_up_ms", "generate_ms", "renew_ms", "lease_get_ms", "list_first_page_ms",
                    "sweep_nothing_due_ms", "sweep_200_due_ms", "refresh_gauges_ms"):
            print(f"| {key} | " + " | ".join(str(r[key]) for r in runs) + " |")
        for title, rows in (("sweeper query", plan), ("lease lookup (get, renew, revoke)", lookup),
                            ("renew's update", renew_plan)):
            print(f"\n{title}, {bulk:,} live leases:")
            for row in rows:
                print("   ", row["QUERY PLAN"])
        app.extensions["scaivault"].close()
    finally:
        standin.stop()
        dbs.drop_all()
        target.drop(issued)
        Path(f"/tmp/svbench-{target.database}.key").unlink(missing_ok=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
