"""PKI: the cost of a CA key in the HSM (SoftHSM2) against a sealed CA key, per certificate.

Creates a throwaway database (svbench_<pid>) and a SoftHSM2 token (KMS_PROVIDER=pkcs11, so the
key hierarchy's root is in the token too), then for EC P-256/P-384 and RSA 2048/4096 CAs, one sealed and
one `key_storage: hsm`, measures per certificate:
  ceiling  px.leaf_certificate signed by an in-memory key (cryptography alone, no database)
  sign     px.leaf_certificate through the CA's Signer (sealed: key opened from its sealed form
           each time, as the service does; hsm: TBS built with a throwaway key, signed in the
           token, DER assembled, verified)
  issue    PkiService.issue end to end (leaf key generation, signing, secret write, row, audit)
  before   the sign step with the CA key loaded with OpenSSL's RSA validation (as before sealed=True)
and reports each against the same run's ceiling.
Usage: python bench/pki_hsm_sign.py [--n 200] [--pg postgresql://postgres@127.0.0.1:5432]
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pg8000.native  # noqa: E402

from scaivault.app import create_app  # noqa: E402
from scaivault.config import DatabaseURL, load_settings  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from scaivault.pki import signer as ps  # noqa: E402
from scaivault.pki import x509 as px  # noqa: E402
from scaivault.services.pki import CaRequest, IssueRequest, system_audit  # noqa: E402
from scaivault.services.secrets import SecretOwner  # noqa: E402
from tests.hsm_support import pkcs11_env, softhsm_token, write_pin_file  # noqa: E402  (the test token setup)


def per_call(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    softhsm_token()
    name = f"svbench_{os.getpid()}"
    admin_url = DatabaseURL.parse("PG", f"{args.pg}/postgres")
    admin = pg8000.native.Connection(user=admin_url.user, host=admin_url.host, port=admin_url.port, database="postgres")
    admin.run(f'CREATE DATABASE "{name}"')
    workdir = tempfile.mkdtemp(prefix="svbench-")
    try:
        url = f"{args.pg}/{name}?sslmode=disable"
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        env = {k: v for k, v in pkcs11_env(write_pin_file(workdir)).items() if v is not None}
        settings = load_settings({"DATABASE_URL": url, "LOG_LEVEL": "error", "BASE_URL": "https://vault.example", **env},
                                 require_services=False)
        app = create_app(settings)
        rt = app.extensions["scaivault"]
        rt.keyring.ensure_root()
        owner = SecretOwner("ptn_bench", "tnt_bench")
        audit = system_audit({"tenant_id": owner.tenant_id, "partner_id": owner.partner_id}, "system:bench")
        now = datetime.datetime.now(datetime.timezone.utc)
        leaf_public = px.generate_key("ec", 256).public_key()
        print(f"n = {args.n} certificates per measurement; p50 per certificate, ratio = p50 / ceiling p50")
        print("| CA key | ceiling (cryptography, in memory) | sign: sealed | sign: HSM | issue: sealed | issue: HSM "
              "| sign: key loaded with OpenSSL's validation (before) |")
        print("|---|---|---|---|---|---|---|")
        for key_type, key_size in (("ec", 256), ("ec", 384), ("rsa", 2048), ("rsa", 4096)):
            cas = {}
            for storage in ("sealed", "hsm"):
                ca = rt.pki.create_ca(owner, CaRequest(name=f"{storage}-{key_type}{key_size}",
                                                       common_name=f"{storage} {key_type}{key_size}",
                                                       ca_type="root", key_type=key_type, key_size=key_size,
                                                       key_storage=storage), "system:bench", audit)
                rt.pki.create_role(owner, {"name": f"r-{storage}-{key_type}{key_size}", "ca_id": ca["id"],
                                           "allowed_domains": ["bench.internal"], "allow_subdomains": True,
                                           "key_type": "ec"}, audit)
                cas[storage] = ca
            memory_key = px.generate_key(key_type, key_size)
            memory = px.Issuer(px.load_certificate(cas["sealed"]["certificate_pem"]), ps.LocalSigner(memory_key))

            def leaf(issuer):
                return px.leaf_certificate(common_name="x.bench.internal", dns_names=["x.bench.internal"], ip_sans=[],
                                           public_key=leaf_public, issuer=issuer, not_before=now,
                                           not_after=now + datetime.timedelta(days=1), server=True, client=False)

            def through_service(storage):
                row = rt.pki.get_ca(owner, cas[storage]["id"])
                return lambda: leaf(rt.pki._issuer(row))          # the service's own signer per certificate

            counter = iter(range(10 ** 9))

            def issue(storage):
                return lambda: rt.pki.issue(owner, f"r-{storage}-{key_type}{key_size}",
                                            IssueRequest(common_name=f"n{next(counter)}.bench.internal"),
                                            "system:bench", audit)

            for warm in (lambda: leaf(memory), through_service("sealed"), through_service("hsm")):
                warm()
            ceiling = statistics.median(per_call(lambda: leaf(memory), args.n))
            cells = []
            memory_pem = px.private_key_pem(memory_key)

            def validated_load():      # what every sealed-CA signature paid before keys were loaded sealed=True
                return leaf(px.Issuer(memory.certificate, ps.LocalSigner(px.load_private_key(memory_pem))))

            for fn in (through_service("sealed"), through_service("hsm"), issue("sealed"), issue("hsm"),
                       validated_load):
                # the validating load costs about a second per RSA 4096 key: fewer rounds of it
                p50 = statistics.median(per_call(fn, args.n if fn is not validated_load else max(5, args.n // 20)))
                cells.append(f"{p50 * 1000:.2f} ms ({p50 / ceiling:.1f}x)")
            print(f"| {key_type} {key_size} | {ceiling * 1000:.2f} ms (1.0x) | " + " | ".join(cells) + " |")
        rt.close()
    finally:
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
