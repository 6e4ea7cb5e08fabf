"""`bench/run.sh --pair`: OpenBao and ScaiVault in the same sitting, one table.

Runs the peer script (../shared/bench/openbao_kv.sh, BENCH_CONFIGS=pgpool: OpenBao 2.7 on
PostgreSQL, pool 64, root token, no audit), then at once ScaiVault's HTTP floor, ceiling, read, write
and mix (bench/secrets_kv.py: policy-scoped JWT, audit on, the same wrk -t2 -c32 settings), then the
in-process CPU per request (bench/cpu_per_request.py), and prints both with the ratios, p50/p90/
p99/max and the load average at the start of each half (the machine may be shared), the CPU per
request of the server, PostgreSQL and the whole machine, and the budget per request the goals leave.
Usage: python bench/pair.py [--duration 15] [--skip-peer RESULTS.tsv]
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peer_script() -> Path:
    explicit = os.environ.get("BENCH_PEER_SCRIPT")
    if explicit:
        return Path(explicit)
    for base in (ROOT.parent, ROOT.parent.parent, Path("/work")):
        candidate = base / "shared" / "bench" / "openbao_kv.sh"
        if candidate.exists():
            return candidate
    raise SystemExit("openbao_kv.sh not found: set BENCH_PEER_SCRIPT")


def run_peer(duration: int) -> tuple[Path, float]:
    workdir = os.environ.get("BENCH_WORKDIR", "/tmp/peer-bench")
    load = os.getloadavg()[0]
    env = {**os.environ, "BENCH_CONFIGS": "pgpool", "BENCH_DURATION": f"{duration}s", "BENCH_SQLCOUNT": "0",
           "BENCH_WORKDIR": workdir}
    subprocess.run(["bash", str(peer_script())], env=env, check=True)
    runs = sorted(glob.glob(os.path.join(workdir, "run-*", "results.tsv")), key=os.path.getmtime)
    return Path(runs[-1]), load


def read_peer(tsv: Path) -> dict[str, dict]:
    out = {}
    with open(tsv) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["config"] == "pgpool" and row["req_per_s"] not in ("", "FAILED"):
                out[row["workload"]] = {"rps": float(row["req_per_s"]), "p50": float(row["p50_ms"]),
                                        "p90": float(row["p90_ms"]), "p99": float(row["p99_ms"]),
                                        "cpu_split": row.get("cpu_split", "")}
    return out


GOALS = {"read": 2.0, "write": 1.0, "mix": 1.5}


def budget(peer: dict, ours: dict) -> list[str]:
    """What the goals leave per request: at goal x OpenBao's req/s with every core busy, the machine has
    cores / (goal x OpenBao req/s) of CPU per request, for wrk, the kernel, PostgreSQL and ScaiVault."""
    bare = ours.get("bare: constant WSGI answer", {}).get("server_cpu_us")
    lines = [f"Budget at the goal ({os.cpu_count()} cores all busy), us of machine CPU per request; the HTTP "
             f"stack alone (bench/bare_wsgi.py on ScaiVault's worker) costs {bare or float('nan'):.0f} us of server CPU:", "",
             "| workload | goal req/s | machine CPU per request at the goal | ScaiVault now: machine / PostgreSQL / server |",
             "|---|---|---|---|"]
    for workload, goal in GOALS.items():
        mine, theirs = ours.get(f"{workload} (policy-scoped JWT, audit on)"), peer.get(workload)
        if not mine or not theirs or not mine.get("machine_cpu_us"):
            continue
        target = goal * theirs["rps"]
        lines.append(f"| {workload} | {target:,.0f} | {os.cpu_count() * 1e6 / target:.0f} | "
                     f"{mine['machine_cpu_us']:.0f} / {mine['pg_cpu_us']:.0f} / {mine['server_cpu_us']:.0f} |")
    cpu = {w: v["cpu_split"] for w, v in peer.items() if v.get("cpu_split")}
    if cpu:
        lines += ["", "OpenBao's CPU split (peer script): " + "; ".join(f"{w}: {c}" for w, c in cpu.items())]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--skip-peer", help="use this results.tsv of an earlier peer run instead of running it")
    args = ap.parse_args()
    started = time.strftime("%H:%M", time.gmtime())
    if args.skip_peer:
        tsv, peer_load = Path(args.skip_peer), float("nan")
    else:
        tsv, peer_load = run_peer(args.duration)
    peer = read_peer(tsv)
    tmp = Path(tempfile.mkdtemp(prefix="svpair-"))
    ours_load = os.getloadavg()[0]
    subprocess.run([sys.executable, str(ROOT / "bench" / "secrets_kv.py"), "--duration", str(args.duration),
                    "--only", "bare,ceiling,read,write,mix", "--json-out", str(tmp / "ours.json")], check=True, cwd=ROOT)
    ours = json.loads((tmp / "ours.json").read_text())
    subprocess.run([sys.executable, str(ROOT / "bench" / "cpu_per_request.py"), "--json-out", str(tmp / "cpu.json")],
                   check=True, cwd=ROOT)
    cpu = json.loads((tmp / "cpu.json").read_text())
    finished = time.strftime("%H:%M", time.gmtime())

    lines = [f"Paired run {started}-{finished} UTC, wrk -t2 -c32 -d{args.duration}s; load average at the start: "
             f"OpenBao half {peer_load:.2f}, ScaiVault half {ours_load:.2f}; peer results: {tsv}", "",
             "| workload | OpenBao req/s | OpenBao p50 / p99 ms | ScaiVault req/s | ScaiVault p50 / p90 / p99 / max ms "
             "| ScaiVault / OpenBao | ScaiVault p99 <= OpenBao p99 |",
             "|---|---|---|---|---|---|---|"]
    for workload in ("read", "write", "mix"):
        mine = ours["results"].get(f"{workload} (policy-scoped JWT, audit on)")
        theirs = peer.get(workload)
        if not mine or not theirs:
            continue
        lines.append(f"| {workload} | {theirs['rps']:,.0f} | {theirs['p50']:.1f} / {theirs['p99']:.1f} | "
                     f"{mine['rps']:,.0f} | {mine['p50']:.1f} / {mine['p90']:.1f} / {mine['p99']:.1f} / {mine['max']:.0f} | "
                     f"{mine['rps'] / theirs['rps']:.2f} | {'yes' if mine['p99'] <= theirs['p99'] else 'no'} |")
    ceiling = ours["results"].get("ceiling: one-query Flask route")
    if ceiling:
        lines.append(f"| ceiling: one-query Flask route | - | - | {ceiling['rps']:,.0f} | "
                     f"{ceiling['p50']:.1f} / {ceiling['p90']:.1f} / {ceiling['p99']:.1f} / {ceiling['max']:.0f} | - | - |")
    lines.append("")
    lines.append(f"In-process CPU per request (sequential, no HTTP): ceiling {cpu['ceiling']} us, read {cpu['read']} us "
                 f"({cpu['read_to_ceiling']}x the ceiling), write {cpu['write']} us ({cpu['write_to_ceiling']}x); "
                 f"with BARE_HOT_ROUTES=false read {cpu['read_flask']} us, write {cpu['write_flask']} us "
                 f"(load {cpu['load']:.2f}).")
    lines += ["", "CPU per request, us (server: the gunicorn processes; machine: all cores busy, wrk and kernel included):", "",
              "| workload | server | PostgreSQL | machine |", "|---|---|---|---|"]
    for key, v in ours["results"].items():
        if v.get("server_cpu_us"):
            lines.append(f"| {key} | {v['server_cpu_us']:.0f} | {v['pg_cpu_us']:.0f} | {v['machine_cpu_us']:.0f} |")
    lines.append("")
    lines += budget(peer, ours["results"])
    non2xx = {k: v["non2xx"] for k, v in ours["results"].items() if v.get("non2xx")}
    if non2xx:
        lines.append(f"Non-2xx responses: {non2xx}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
