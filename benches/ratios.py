#!/usr/bin/env python3
"""Throughput table from a criterion run of `archive_throughput`.

Usage: benches/ratios.py CRITERION_DIR [--stat median|mean|slope|min] [--baseline NAME]

Reads every `*/new/estimates.json` (time per iteration, ns) with its `benchmark.json`
(group, function, throughput in bytes) under CRITERION_DIR (e.g. `target/criterion`) and
prints one markdown table per group (payload size): GB/s of each function, its ratio to the
baseline (`raw_aes_gcm`), and for idv's own functions the format overhead, 1 - ratio
(throughput lost to the format). The issue's target is an overhead under 10% at 64 MiB.

`--stat min` takes the fastest sample from `sample.json` instead of an estimate: on a shared
machine, interference only ever adds time, so the minimum is the steadiest comparison.
"""

import argparse
import json
import pathlib
import sys

TARGET_GROUP = "64MiB"
TARGET_OVERHEAD = 0.10
FORMAT_FUNCTIONS = ("idv_seal", "idv_open")


def load(criterion_dir, stat):
    """{group: {function: (bytes, ns)}} for every benchmark with a byte throughput."""
    groups = {}
    for estimates in sorted(pathlib.Path(criterion_dir).glob("**/new/estimates.json")):
        meta_path = estimates.with_name("benchmark.json")
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        throughput = meta.get("throughput") or {}
        size = throughput.get("Bytes") or throughput.get("BytesDecimal")
        if not size:
            continue
        if stat == "min":
            sample = json.loads(estimates.with_name("sample.json").read_text())
            point = min(t / n for t, n in zip(sample["times"], sample["iters"]))
        else:
            est = json.loads(estimates.read_text())
            # Flat sampling has no slope; fall back to the mean, as criterion's report does.
            point = (est.get(stat) or est["mean"])["point_estimate"]
        groups.setdefault(meta["group_id"], {})[meta["function_id"]] = (size, point)
    return groups


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("criterion_dir")
    parser.add_argument("--stat", default="median", choices=("median", "mean", "slope", "min"))
    parser.add_argument("--baseline", default="raw_aes_gcm")
    args = parser.parse_args()

    groups = load(args.criterion_dir, args.stat)
    if not groups:
        sys.exit(f"no criterion results with a byte throughput under {args.criterion_dir}")

    missed = []
    # Smallest payload first.
    for group, functions in sorted(groups.items(), key=lambda g: min(s for s, _ in g[1].values())):
        base = functions.get(args.baseline)
        label = "fastest sample" if args.stat == "min" else f"{args.stat} time per iteration"
        print(f"### {group} ({label})\n")
        print(f"| function | GB/s | × {args.baseline} | format overhead |")
        print("|---|---:|---:|---:|")
        for name, (size, ns) in sorted(functions.items(), key=lambda f: f[1][1]):
            gbps = size / ns  # bytes per nanosecond = GB/s
            if base is None:
                ratio_cell, overhead_cell = "–", "–"
            else:
                ratio = base[1] / ns
                ratio_cell = f"{ratio:.2f}×"
                overhead_cell = "–"
                if name.startswith("idv_"):
                    overhead = 1 - ratio
                    overhead_cell = f"{overhead:.0%}"
                    if group == TARGET_GROUP and name in FORMAT_FUNCTIONS and overhead > TARGET_OVERHEAD:
                        missed.append(f"{name} at {group}: {overhead:.0%}")
            print(f"| {name} | {gbps:.2f} | {ratio_cell} | {overhead_cell} |")
        print()

    if TARGET_GROUP in groups:
        if missed:
            print(f"Target (overhead < {TARGET_OVERHEAD:.0%} at {TARGET_GROUP}) missed: " + "; ".join(missed))
        else:
            print(f"Target (overhead < {TARGET_OVERHEAD:.0%} at {TARGET_GROUP}) met by " + ", ".join(FORMAT_FUNCTIONS))


if __name__ == "__main__":
    main()
