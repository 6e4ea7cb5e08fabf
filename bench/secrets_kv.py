"""Secrets load benchmark: ScaiVault under `scaivault serve` (gunicorn + gevent, 2 workers) with wrk.

Workloads (wrk -t2 -c32, the settings of ../shared/bench/openbao_kv.sh): read, write and 90/10
mix over 1,000 secrets of about 200 bytes, as a policy-scoped user (not an admin: a long-lived
JWT from the ScaiKey stand-in, bound to a `bench/**` policy), audit on, rate limits raised;
batch reads of 100 paths; listing with 100,000 secrets in one tenant; the ceiling, a bare
Flask route doing one pooled query on the same stack; and the floor of the HTTP stack, a constant
WSGI answer on ScaiVault's worker class (bench/bare_wsgi.py). Each wrk run also reports CPU per
request: the server's, PostgreSQL's and the whole machine's. Creates and drops its own database.

Usage: python bench/secrets_kv.py [--duration 15] [--only read,write,mix,batch,list,ceiling,bare]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pg8000.native
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaivault.config import DatabaseURL  # noqa: E402
from scaivault.migrate import MigrationRunner  # noqa: E402
from scaivault.ratelimit import CATEGORIES  # noqa: E402
from scaivault.policy.cache import CHECK_INTERVAL  # noqa: E402
from tests.scaikey_standin import ScaiKeyStandin  # noqa: E402

TENANT, LIST_TENANT, PARTNER = "tnt_bench", "tnt_bench_list", "ptn_bench"
NSECRETS = 1000
VALUE = {"username": "svc_reporting", "password": "x" * 64, "host": "db.internal.example", "port": 5432,
         "options": "sslmode=require&application_name=reporting-service"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def lua(workdir: Path, name: str, text: str) -> str:
    path = workdir / f"{name}.lua"
    path.write_text(text)
    return str(path)


def wrk(url: str, seconds: int, token: str | None, script: str | None, timeout: str = "2s") -> dict:
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "--timeout", timeout]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", out, re.M)
    peak = float(latency.group(1)) if latency else float("nan")
    if latency:
        peak = peak / 1000 if latency.group(2) == "us" else peak * 1000 if latency.group(2) == "s" else peak
    total = re.search(r"(\d+) requests in", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50"), "p99": ms("99"),
            "requests": int(total.group(1)) if total else 0,
            "p90": ms("90"), "max": peak,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its living descendants."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def postgres_cpu() -> dict[int, float]:
    """CPU seconds used so far by each living PostgreSQL process (postmaster, backends, walwriter...)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, _, rest = (entry / "stat").read_text().rpartition(")")
            if head.rsplit("(", 1)[1].startswith("postgres"):
                fields = rest.split()
                out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return out


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def wrk_with_cpu(pid: int, *args, **kwargs) -> dict:
    """wrk, plus CPU time per request (steadier than req/s on a shared machine): the server's
    (`pid` and its workers), PostgreSQL's and the whole machine's (wrk and the kernel included)."""
    server, pg, machine = tree_cpu(pid), postgres_cpu(), machine_cpu()
    result = wrk(*args, **kwargs)
    # a PostgreSQL process that exited meanwhile took its CPU along: count those alive at the end
    pg_used = sum(used - pg.get(p, 0.0) for p, used in postgres_cpu().items())
    count = max(1, result["requests"])
    for key, used in (("server_cpu_us", tree_cpu(pid) - server), ("pg_cpu_us", pg_used),
                      ("machine_cpu_us", machine_cpu() - machine)):
        result[key] = used / count * 1e6
    return result


def row(name: str, r: dict, ceiling: float | None) -> str:
    ratio = f"{r['rps'] / ceiling:.2f}" if ceiling else "-"
    return (f"| {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {ratio} | {r['non2xx']} "
            f"| {r['socket_errors'] or 0} | {r.get('server_cpu_us', 0):.0f} | {r.get('pg_cpu_us', 0):.0f} "
            f"| {r.get('machine_cpu_us', 0):.0f} |")


def timed(fn, n: int = 15) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def seed_listing(url: str, count: int) -> None:
    """100 teams x 100 services x N secrets as rows (metadata only: listing never opens values)."""
    conn = pg8000.native.Connection(**_conn_args(url))
    try:
        per = max(1, count // 10000)
        conn.run(f"""INSERT INTO secrets (partner_id, tenant_id, path, secret_type, metadata, current_version,
                                          max_versions, created_by, updated_by)
                     SELECT '{PARTNER}', '{LIST_TENANT}',
                            format('team-%s/svc-%s/secret-%s', lpad((i / ({per} * 100))::text, 2, '0'),
                                   lpad(((i / {per}) % 100)::text, 3, '0'), lpad((i % {per})::text, 2, '0')),
                            'kv', jsonb_build_object('tags', jsonb_build_array('t' || (i % 7)), 'owner', 'team:' || (i % 13)),
                            1, 10, 'bench', 'bench'
                       FROM generate_series(0, {count - 1}) AS i""")
        conn.run("ANALYZE secrets")
    finally:
        conn.close()


def _conn_args(url: str) -> dict:
    u = DatabaseURL.parse("DATABASE_URL", url)
    return {"user": u.user, "host": u.host, "port": u.port, "database": u.database}


def main() -> None:
    # SIGTERM runs the cleanup below too (servers stopped, database dropped)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "15")))
    ap.add_argument("--only", default="bare,ceiling,read,write,mix,batch,list")
    ap.add_argument("--list-secrets", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="seed, then keep serving for manual probing")
    ap.add_argument("--json-out", help="also write the wrk figures as JSON here (bench/pair.py reads them)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    seconds = args.duration

    name = f"svkv_{secrets.token_hex(4)}"
    admin_conn = pg8000.native.Connection(user="postgres", host="127.0.0.1", port=5432, database="postgres")
    admin_conn.run(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}?sslmode=disable"
    standin = ScaiKeyStandin().start()
    procs: list[subprocess.Popen] = []
    workdir = Path(tempfile.mkdtemp(prefix="svbench-"))
    lines: list[str] = []
    try:
        MigrationRunner(DatabaseURL.parse("DATABASE_URL", url)).apply()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        limits = "\n".join(f"{c}: {{rate: 100000000, window: 1m}}" for c in CATEGORIES)
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/15", "SCAIKEY_URL": standin.url,
               "SCAIKEY_AUDIENCE": "scaivault",   # the stand-in's tokens carry aud=scaivault
               "BASE_URL": base, "BIND_ADDRESS": f"127.0.0.1:{port}", "KMS_PROVIDER": "local",
               "KMS_LOCAL_KEY_FILE": str(workdir / "root.key"), "WEB_CONCURRENCY": "2", "LOG_LEVEL": "error",
               "RATE_LIMITS": limits}
        procs.append(subprocess.Popen([sys.executable, "-m", "scaivault.cli", "serve"], env=env, cwd=ROOT))
        wait_http(base + "/v1/health")

        admin = standin.mint(sub="usr_bench_admin", email="admin@bench.example", tenant_id=TENANT, partner_id=PARTNER,
                             role="tenant_admin", expires_in=86400,
                             scopes=("secrets:read", "secrets:write", "secrets:list", "policies:read", "policies:write"))
        user = standin.mint(sub="usr_bench", email="bench@bench.example", tenant_id=TENANT, partner_id=PARTNER,
                            expires_in=86400, scopes=("secrets:read", "secrets:write", "secrets:list"))
        ah = {"Authorization": f"Bearer {admin}"}
        uh = {"Authorization": f"Bearer {user}"}
        session = requests.Session()
        policy = session.post(base + "/v1/policies", headers=ah, json={
            "name": "bench", "rules": [{"path_pattern": "bench/**", "permissions": ["read", "write", "list"]}]}).json()
        session.post(f"{base}/v1/policies/{policy['id']}/bindings", headers=ah,
                     json={"identity_type": "user", "identity_id": "user:bench@bench.example"}).raise_for_status()
        # a policy change reaches the other workers within CHECK_INTERVAL (scaivault.policy.cache); a worker
        # that compiled this identity's policies at warm-up (the Redis hint list of an earlier run) may answer
        # 403 until then
        time.sleep(2 * CHECK_INTERVAL)
        body = json.dumps({"data": VALUE, "secret_type": "json"})
        print(f"value size: {len(json.dumps(VALUE))} bytes", flush=True)

        def put(i: int) -> None:
            r = requests.put(f"{base}/v1/secrets/bench/app-{i:03d}/db", data=body,
                             headers={**uh, "Content-Type": "application/json"}, timeout=30)
            assert r.status_code in (200, 201), r.text

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(NSECRETS)))
        check = session.get(base + "/v1/secrets/bench/app-007/db", headers=uh)
        assert check.status_code == 200 and check.json()["data"] == VALUE, check.text

        if args.keep:
            (workdir / "env").write_text(f"BASE={base}\nUSER_TOKEN={user}\nADMIN_TOKEN={admin}\n")
            print(f"serving at {base}; tokens in {workdir / 'env'}; Ctrl-C to stop", flush=True)
            while True:
                time.sleep(3600)
        read_lua = lua(workdir, "read", """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/v1/secrets/bench/app-%03d/db", math.random(0, 999)))
end""")
        payload = body.replace("\\", "\\\\").replace('"', '\\"')
        write_lua = lua(workdir, "write", f"""
math.randomseed(os.time() + 1)
wrk.headers["Content-Type"] = "application/json"
local body = "{payload}"
request = function()
  return wrk.format("PUT", string.format("/v1/secrets/bench/app-%03d/db", math.random(0, 999)), nil, body)
end""")
        mix_lua = lua(workdir, "mix", f"""
math.randomseed(os.time() + 2)
wrk.headers["Content-Type"] = "application/json"
local body = "{payload}"
request = function()
  local path = string.format("/v1/secrets/bench/app-%03d/db", math.random(0, 999))
  if math.random(1, 100) <= 10 then
    return wrk.format("PUT", path, nil, body)
  end
  return wrk.format("GET", path)
end""")
        batch_body = json.dumps({"paths": [f"bench/app-{i:03d}/db" for i in range(100)]}).replace('"', '\\"')
        batch_lua = lua(workdir, "batch", f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "{batch_body}"
""")
        ceiling_lua = lua(workdir, "ceiling", """
math.randomseed(os.time() + 3)
request = function()
  return wrk.format("GET", string.format("/q?p=bench/app-%03d/db", math.random(0, 999)))
end""")

        ceiling = None
        results: dict[str, dict] = {}
        def side_server(label: str, worker: str, target: str, probe: str, script: str | None) -> dict:
            """wrk against another gunicorn app on the same machine (2 workers), stopped afterwards."""
            sport = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-k", worker, "-w", "2", "--worker-connections", "1000",
                 "-b", f"127.0.0.1:{sport}", "--log-level", "error", target],
                env={**env, "BENCH_TENANT": TENANT}, cwd=ROOT)
            procs.append(proc)
            try:
                wait_http(f"http://127.0.0.1:{sport}{probe}")
                results[label] = wrk_with_cpu(proc.pid, f"http://127.0.0.1:{sport}{probe}", seconds, None, script)
                return results[label]
            finally:
                proc.terminate()
                proc.wait(10)
                procs.remove(proc)

        if "ceiling" in only:
            ceiling = side_server("ceiling: one-query Flask route", "gevent", "bench.ceiling:app", "/q?p=bench/app-001/db",
                                  ceiling_lua)["rps"]
        if "bare" in only:
            # the floor of the HTTP stack: ScaiVault's gunicorn worker class serving a constant answer
            side_server("bare: constant WSGI answer", "scaivault.patches.ScaiVaultPyWSGIWorker", "bench.bare_wsgi:app",
                        "/", None)
        for key, script in (("read", read_lua), ("write", write_lua), ("mix", mix_lua)):
            if key in only:
                results[f"{key} (policy-scoped JWT, audit on)"] = wrk_with_cpu(procs[0].pid, base + "/", seconds, user, script)
                print(key, results[f"{key} (policy-scoped JWT, audit on)"], flush=True)
        if "batch" in only:
            results["batch read, 100 paths per request"] = wrk(base + "/v1/secrets/batch", seconds, user, batch_lua, timeout="10s")

        lines.append(f"wrk -t2 -c32 -d{seconds}s --latency; {NSECRETS} secrets of {len(json.dumps(VALUE))} bytes; "
                     f"WEB_CONCURRENCY=2; {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
        lines.append("")
        lines.append("| workload | req/s | p50 ms | p99 ms | ratio to ceiling | non-2xx | socket errors "
                     "| server CPU us/request | PostgreSQL CPU us/request | machine CPU us/request |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for key, r in results.items():
            lines.append(row(key, r, ceiling))
        if "batch" in only:
            r = results["batch read, 100 paths per request"]
            lines.append(f"\nbatch: {r['rps'] * 100:.0f} secrets/s through 100-path batches")

        if "list" in only:
            seed_listing(url, args.list_secrets)
            ladmin = standin.mint(sub="usr_list_admin", email="ladmin@bench.example", tenant_id=LIST_TENANT,
                                  partner_id=PARTNER, role="tenant_admin", expires_in=86400,
                                  scopes=("secrets:list", "policies:read", "policies:write"))
            luser = standin.mint(sub="usr_list", email="lister@bench.example", tenant_id=LIST_TENANT,
                                 partner_id=PARTNER, expires_in=86400, scopes=("secrets:list",))
            lh, luh = {"Authorization": f"Bearer {ladmin}"}, {"Authorization": f"Bearer {luser}"}
            pol = session.post(base + "/v1/policies", headers=lh, json={
                "name": "list-some", "rules": [{"path_pattern": "team-07/**", "permissions": ["list"]},
                                               {"path_pattern": "team-*/svc-042/*", "permissions": ["list"]}]}).json()
            session.post(f"{base}/v1/policies/{pol['id']}/bindings", headers=lh,
                         json={"identity_type": "user", "identity_id": "user:lister@bench.example"}).raise_for_status()
            first = session.get(base + "/v1/secrets?limit=100", headers=lh).json()
            assert len(first["secrets"]) == 100, first
            deep = session.get(base + "/v1/secrets?limit=100&prefix=team-50/", headers=lh).json()
            cases = {
                "admin, first page of 100 (no prefix)": (base + "/v1/secrets?limit=100", lh),
                "admin, page 2 via cursor": (base + f"/v1/secrets?limit=100&cursor={first['cursor']}", lh),
                "admin, deep page via cursor (team-50/ onward)": (base + f"/v1/secrets?limit=100&cursor={deep['cursor']}", lh),
                "admin, delimiter=/ at the root (100 folders)": (base + "/v1/secrets?delimiter=/&limit=1000", lh),
                "admin, delimiter=/ under team-50/ (100 folders)": (base + "/v1/secrets?prefix=team-50/&delimiter=/&limit=1000", lh),
                "admin, tag filter, first page": (base + "/v1/secrets?tag=t3&limit=100", lh),
                "admin, q substring (rare: svc-042/secret-03)": (base + "/v1/secrets?q=svc-042/secret-03&limit=100", lh),
                "policy user (team-07/**, team-*/svc-042/*), first page": (base + "/v1/secrets?limit=100", luh),
                "policy user, delimiter=/ at the root": (base + "/v1/secrets?delimiter=/&limit=1000", luh),
            }
            lines.append(f"\nlisting, {args.list_secrets} secrets in one tenant (median of 15 sequential requests):\n")
            lines.append("| listing | median ms | items |")
            lines.append("|---|---|---|")
            for label, (u, h) in cases.items():
                doc = session.get(u, headers=h).json()
                items = len(doc.get("secrets", [])) + len(doc.get("folders") or [])
                lines.append(f"| {label} | {timed(lambda: session.get(u, headers=h)):.1f} | {items} |")
            results["list first page (admin)"] = wrk(base + "/v1/secrets?limit=100", seconds, ladmin, None)
            lines.append("\n| listing under wrk | req/s | p50 ms | p99 ms |\n|---|---|---|---|")
            r = results["list first page (admin)"]
            lines.append(f"| first page of 100, admin | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} |")
        print("\n".join(lines), flush=True)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"results": results, "ceiling": ceiling,
                                                       "load_before": os.getloadavg()[0]}))
        out = workdir / "results.md"
        out.write_text("\n".join(lines) + "\n")
        print(f"\nwritten to {out}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        standin.stop()
        admin_conn.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d", d=name)
        admin_conn.run(f'DROP DATABASE IF EXISTS "{name}"')
        admin_conn.close()


if __name__ == "__main__":
    main()
