#!/usr/bin/env python3
"""Second by second: the acks' p99 from an `ingest_load` run beside what the server's journal
and the machine did in that second.

    ingest_seconds.py record SAMPLES.jsonl      # start before ingest_load; ends with the server
    ingest_seconds.py report RUN.log SAMPLES.jsonl

`record` waits for an `idv` server listening on 127.0.0.1 (the one `ingest_load` starts; a
process named `idv` or `idv-*`), then every 250 ms writes one JSON line: wall-clock time, the
disk's counters (`/proc/diskstats`, the busiest device), the machine's CPU (`/proc/stat`) and
the server's journal metrics (`/metrics`). `report` reads the `RESULT` line of the run's output
(its `p99_by_second_ms` and `measured_from_unix_ms`) and prints, for each measured second,
the p99 beside the group commits that second (how many, how many took over 20 and 50 ms, their
summed time), checkpoints started and finished, the applier's time, the disk's write MB/s and
device flushes, and how busy the machine was.
"""

import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request

PERIOD_S = 0.25
COMMIT = "idv_journal_commit_seconds"


def find_server():
    """(port, pid) of an idv server listening on loopback."""
    pattern = re.compile(r"127\.0\.0\.1:(\d+)\s.*\"(idv(?:-[\w-]+)?)\",pid=(\d+)")
    for _ in range(1200):
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        for line in listening.splitlines():
            found = pattern.search(line)
            if found:
                return int(found.group(1)), found.group(3)
        time.sleep(0.5)
    sys.exit("no idv server listening on 127.0.0.1 within 10 minutes")


def disks():
    """Write counters of each block device: {name: (writes, sectors, flushes)}."""
    out = {}
    with open("/proc/diskstats") as stats:
        for line in stats:
            f = line.split()
            if not f[2].startswith(("loop", "ram")):
                out[f[2]] = (int(f[7]), int(f[9]), int(f[18]) if len(f) > 18 else 0)
    return out


def cpu():
    with open("/proc/stat") as stat:
        return [int(x) for x in stat.readline().split()[1:9]]


def metrics(url, context):
    try:
        text = urllib.request.urlopen(url, context=context, timeout=1).read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith("idv_journal"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def record(path):
    port, pid = find_server()
    url = f"https://127.0.0.1:{port}/metrics"
    context = ssl._create_unverified_context()  # the server's self-signed certificate
    with open(path, "w") as out:
        while os.path.exists(f"/proc/{pid}"):
            started = time.time()
            sample = {"t": round(started * 1000), "disks": disks(), "cpu": cpu(),
                      "m": metrics(url, context)}
            out.write(json.dumps(sample) + "\n")
            out.flush()
            time.sleep(max(0.0, PERIOD_S - (time.time() - started)))


def report(run_log, path):
    result = None
    with open(run_log) as log:
        for line in log:
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
    if result is None or "measured_from_unix_ms" not in result:
        sys.exit(f"{run_log}: no RESULT line with measured_from_unix_ms")
    with open(path) as lines:
        samples = [json.loads(line) for line in lines]
    samples = [s for s in samples if s["m"]]
    if not samples:
        sys.exit(f"{path}: no sample reached the server")
    # The disk that took the most writes over the run.
    disk = max(samples[-1]["disks"],
               key=lambda d: samples[-1]["disks"][d][1] - samples[0]["disks"].get(d, (0, 0, 0))[1])
    start = result["measured_from_unix_ms"]

    def at(ms):
        before = [s for s in samples if s["t"] <= ms]
        return before[-1] if before else None

    print(f"disk {disk}")
    print("  s  p99 ms  commits  >20ms  >50ms  commit ms  ckpt+  ckpt-  apply ms  write MB/s"
          "  flushes  busy %")
    for second, p99 in enumerate(result["p99_by_second_ms"]):
        a, b = at(start + second * 1000), at(start + (second + 1) * 1000)
        if a is None or b is None or a is b:
            continue

        def delta(name):
            return b["m"].get(name, 0) - a["m"].get(name, 0)

        commits = delta(f"{COMMIT}_count")
        over_20 = commits - delta(f'{COMMIT}_bucket{{le="0.02"}}')
        over_50 = commits - delta(f'{COMMIT}_bucket{{le="0.05"}}')
        da, db = a["disks"].get(disk, (0, 0, 0)), b["disks"].get(disk, (0, 0, 0))
        ticks = [y - x for x, y in zip(a["cpu"], b["cpu"])]
        busy = 100 * (1 - (ticks[3] + ticks[4]) / max(1, sum(ticks)))
        print(f"{second:3d} {p99:7.0f} {commits:8.0f} {over_20:6.0f} {over_50:6.0f} "
              f"{1000 * delta(f'{COMMIT}_sum'):10.0f} "
              f"{delta('idv_journal_checkpoints_total'):6.0f} "
              f"{delta('idv_journal_checkpoint_seconds_count'):6.0f} "
              f"{1000 * delta('idv_journal_apply_seconds_sum'):9.0f} "
              f"{(db[1] - da[1]) * 512 / 1e6:11.0f} {db[2] - da[2]:8d} {busy:7.0f}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
