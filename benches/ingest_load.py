#!/usr/bin/env python3
"""Runs the ingest load bench (src/bin/ingest_load.rs) at several agent counts and prints a
Markdown table, and whether issue 4's bar holds at each: every agent held with zero loss,
p99 ack latency under 50 ms, at most 64 KiB of server memory per connected agent.

    ingest_load.py RELEASE_DIR [--agents 50 200 1000] [-- ARGS FOR ingest_load]

Each run starts its own `idv serve` (RELEASE_DIR/idv) with a fresh data directory under
$TMPDIR (which must be a real disk: on tmpfs an fsync costs nothing), removed afterwards.
"""

import argparse
import json
import os
import subprocess
import sys

P99_TARGET_MS = 50
RSS_TARGET_KIB = 64


def run(release, agents, extra):
    command = [os.path.join(release, "ingest_load"), "--agents", str(agents), *extra]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"no RESULT line from {command}")


def syncs(value):
    return "–" if value is None else f"{value:.0f}"


def kib(value):
    return "–" if value is None else f"{value:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", help="the directory holding idv and ingest_load")
    parser.add_argument("--agents", type=int, nargs="+", default=[50, 200, 1000])
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)

    rows = [run(args.release, n, extra) for n in args.agents]
    print()
    print("| agents | held, zero loss | ack p50 / p99 / max (ms) | Mbit/s | server CPU idle / load "
          "(% of a core) | server RSS per agent idle / load (KiB) | syncs/s | generator CPU (%) "
          "| rest of the machine's CPU (%) | load average before → during | bar |")
    print("|---:|---:|---|---:|---|---|---:|---:|---:|---|---|")
    for r in rows:
        others = (r["machine_cpu_load_pct"] - (r["server_cpu_load_pct"] or 0)
                  - r["client_cpu_load_pct"])
        missed = [what for what, ok in [
            ("loss", r["held"] == r["agents"]),
            ("p99", r["p99_ms"] < P99_TARGET_MS),
            ("memory", (r["rss_per_agent_load_kib"] or 0) <= RSS_TARGET_KIB),
        ] if not ok]
        print(f"| {r['agents']} | {r['held']} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / "
              f"{r['max_ms']:.0f} | {r['mbit_s']:.0f} | {r['server_cpu_idle_pct'] or 0:.0f} / "
              f"{r['server_cpu_load_pct'] or 0:.0f} | {kib(r['rss_per_agent_idle_kib'])} / "
              f"{kib(r['rss_per_agent_load_kib'])} | {syncs(r.get('server_syncs_per_s'))} | "
              f"{r['client_cpu_load_pct']:.0f} | "
              f"{others:.0f} | "
              f"{r['load_average_before']} → {r['load_average_during']} | "
              f"{'misses: ' + ', '.join(missed) if missed else 'holds'} |")
        if r["first_failure"]:
            print(f"  ({r['failed']} agents failed; first: {r['first_failure']})")
    print()
    for r in rows:
        threads = r.get("server_thread_cpu_pct") or {}
        busiest = sorted(threads.items(), key=lambda t: -t[1])
        print(f"- {r['agents']} agents, server CPU by thread (% of a core): "
              + ", ".join(f"{name} {pct:.0f}" for name, pct in busiest))


if __name__ == "__main__":
    main()
