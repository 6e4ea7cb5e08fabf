"""PKI revocation at scale: revoke and CRL-fetch latency with 10,000 revoked certificates on one CA.

Creates a throwaway database (svbench_<pid>), a local KMS key, an EC P-256 root CA and a role;
puts N revoked certificates on the CA (rows inserted in bulk: the CRL only needs their serials),
then measures: a full CRL regeneration (the background cost), revoking real issued certificates
(the request's cost; the CRL is re-signed off the request), how long until the new CRL carries
the serial, and anonymous CRL fetches through the Flask app (cached CRL, DER).
Usage: python bench/pki_crl.py [--revoked 10000] [--pg postgresql://postgres@127.0.0.1:5432]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pg8000.native  # noqa: E402
from cryptography import x509  # noqa: E402

from scaivault.app import create_app  # noqa: E402
from scaivault.config import DatabaseURL, load_settings  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from scaivault.services.pki import CaRequest, IssueRequest, system_audit  # noqa: E402
from scaivault.services.secrets import SecretOwner  # noqa: E402


def ms(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revoked", type=int, default=10000)
    parser.add_argument("--revokes", type=int, default=20)
    parser.add_argument("--fetches", type=int, default=200)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    name = f"svbench_{os.getpid()}"
    admin_url = DatabaseURL.parse("PG", f"{args.pg}/postgres")
    admin = pg8000.native.Connection(user=admin_url.user, host=admin_url.host, port=admin_url.port, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    keydir = tempfile.mkdtemp(prefix="svbench-")
    try:
        url = f"{args.pg}/{name}?sslmode=disable"
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        settings = load_settings({"DATABASE_URL": url, "KMS_PROVIDER": "local", "KMS_LOCAL_KEY_FILE": f"{keydir}/root.key",
                                  "LOG_LEVEL": "error", "BASE_URL": "https://vault.example",
                                  # measure the CRL path, not the per-IP limiter (one client IP here)
                                  "RATE_LIMITS": "pki:public: {rate: 1000000, window: 1m}"}, require_services=False)
        app = create_app(settings)
        rt = app.extensions["scaivault"]
        rt.keyring.ensure_root()
        owner = SecretOwner("ptn_bench", "tnt_bench")
        audit = system_audit({"tenant_id": owner.tenant_id, "partner_id": owner.partner_id}, "system:bench")
        ca = rt.pki.create_ca(owner, CaRequest(name="bench-root", common_name="Bench Root", ca_type="root",
                                               key_type="ec", key_size=256), "system:bench", audit)
        rt.pki.create_role(owner, {"name": "svc", "ca_id": ca["id"], "allowed_domains": ["bench.internal"],
                                   "allow_subdomains": True, "key_type": "ec"}, audit)
        started = time.perf_counter()
        rt.db.execute("""INSERT INTO pki_certificates (id, partner_id, tenant_id, ca_id, serial_number, not_before,
                                                       not_after, certificate_pem, source, revoked_at, revocation_reason)
                         SELECT 'cert_bulk' || g, :p, :t, :ca, substr(md5(random()::text) || md5(random()::text), 1, 38),
                                now() - interval '10 days', now() + interval '30 days', '-', 'issue', now() - interval '1 day', 'superseded'
                           FROM generate_series(1, :n) AS g""", p=owner.partner_id, t=owner.tenant_id, ca=ca["id"],
                      n=args.revoked)
        rt.db.execute("UPDATE pki_cas SET revocations = revocations + 1 WHERE id = :id", id=ca["id"])
        print(f"inserted {args.revoked} revoked certificates in {time.perf_counter() - started:.2f} s")
        regen = []
        for _ in range(5):
            t0 = time.perf_counter()
            result = rt.pki.regenerate_crl(ca["id"], force=True, full=True)
            regen.append(time.perf_counter() - t0)
        print(f"full CRL regeneration ({result['entries']} entries, {len(result['der']) // 1024} KiB DER): {ms(regen)}")
        certs = [rt.pki.issue(owner, "svc", IssueRequest(common_name=f"n{i}.bench.internal"), "system:bench", audit)
                 for i in range(args.revokes)]
        client = app.test_client()
        revoke_t, visible_t, stale_fetch_t = [], [], []
        for cert in certs:
            t0 = time.perf_counter()
            rt.pki.revoke_certificate(owner, cert["id"], "key_compromise", audit)
            t1 = time.perf_counter()
            revoke_t.append(t1 - t0)
            serial = int(cert["serial_number"], 16)
            first = True
            while True:   # anonymous fetches right after the revoke, until the serial is listed
                t2 = time.perf_counter()
                resp = client.get(f"/v1/pki/ca/{ca['id']}/crl")
                if first:
                    stale_fetch_t.append(time.perf_counter() - t2)
                    first = False
                crl = x509.load_der_x509_crl(resp.data)
                if crl.get_revoked_certificate_by_serial_number(serial) is not None:
                    break
            visible_t.append(time.perf_counter() - t1)
        print(f"revoke ({args.revokes} revocations, request path): {ms(revoke_t)}")
        print(f"revoke -> serial in an anonymously fetched CRL: {ms(visible_t)}")
        print(f"anonymous CRL fetch right after a revoke (CRL being re-signed): {ms(stale_fetch_t)}")
        fetch = []
        for _ in range(args.fetches):
            t0 = time.perf_counter()
            resp = client.get(f"/v1/pki/ca/{ca['id']}/crl")
            fetch.append(time.perf_counter() - t0)
            assert resp.status_code == 200
        print(f"anonymous CRL fetch, cached ({args.fetches} fetches, {len(resp.data) // 1024} KiB): {ms(fetch)}")
        rt.close()
    finally:
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
