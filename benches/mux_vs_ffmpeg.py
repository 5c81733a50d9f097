#!/usr/bin/env python3
"""The mux bench: idv against ffmpeg + raw AES-GCM on the same call, in the same run.

Usage: benches/mux_vs_ffmpeg.py BIN_DIR [--minutes 10] [--runs 3] [--memory-minutes 60]

BIN_DIR holds release builds of `idv`, `bench-call` and `aes-gcm-file`. The call is a
camera file (720p30 H.264) and a CTI recording (8 kHz µ-law) that starts 5 s before the
camera; both tools do the same offset + trim + mux:

* idv:  `idv mux` → a sealed archive (fragmented MP4, AES-256-GCM chunks, manifest, audit).
* peer: `ffmpeg -i camera -ss 5 -i cti -map 0:v -map 1:a -c:v copy -c:a aac -b:a 32k
        -shortest -movflags +faststart peer.mp4`, then `aes-gcm-file peer.mp4` (the raw
        primitive idv uses, 64 KiB chunks, nothing else).

Prints wall time (median of the runs), × realtime and peak RSS of each, and idv's time as a
ratio of the peer's (target ≤ 1.0). With --memory-minutes it also muxes a call that long
once and reports idv's peak RSS (target < 128 MiB for 60 minutes).
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

T0 = "2026-11-21T10:00:00Z"
AUDIO_START = "2026-11-21T09:59:55Z"


def run(cmd):
    """(wall seconds, peak RSS MiB) of one command; raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{err}")
    return wall, usage.ru_maxrss / 1024


def media(bins, minutes, cache):
    out = subprocess.run(
        [bins / "bench-call", cache, str(minutes)], check=True, capture_output=True, text=True
    ).stdout.split()
    return pathlib.Path(out[0]), pathlib.Path(out[1])


def idv_mux(bins, camera, cti, minutes, work):
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    out = work / "call.idvr"
    out.unlink(missing_ok=True)
    end = f"2026-11-21T{10 + minutes // 60:02d}:{minutes % 60:02d}:00Z"
    return run([bins / "idv", "--data-dir", data, "mux", "--video", camera, "--video-start", T0,
                "--audio", cti, "--audio-start", AUDIO_START, "--audio-end", end, "-o", out])


def peer(bins, camera, cti, work):
    mp4 = work / "peer.mp4"
    w1, m1 = run(["ffmpeg", "-y", "-v", "error", "-i", camera, "-ss", "5", "-i", cti,
                  "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "32k",
                  "-shortest", "-movflags", "+faststart", mp4])
    w2, m2 = run([bins / "aes-gcm-file", mp4, work / "peer.enc"])
    return w1 + w2, max(m1, m2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bins", type=pathlib.Path)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory-minutes", type=int, default=0)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/idv/bench-media"))
    args = ap.parse_args()

    camera, cti = media(args.bins, args.minutes, args.cache)
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="idv-mux-bench-") as tmp:
        work = pathlib.Path(tmp)
        results = {"idv mux (sealed)": [], "ffmpeg + aes-gcm": []}
        for _ in range(args.runs):  # interleaved, so drift in machine load hits both
            results["idv mux (sealed)"].append(idv_mux(args.bins, camera, cti, args.minutes, work))
            results["ffmpeg + aes-gcm"].append(peer(args.bins, camera, cti, work))
        print(f"\n### {args.minutes}-minute call: 720p30 H.264 camera + 8 kHz µ-law CTI "
              f"(median of {args.runs})\n")
        print("| tool | wall s | × realtime | peak RSS MiB |")
        print("|---|---:|---:|---:|")
        medians = {}
        for name, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            rss = max(r[1] for r in rows)
            medians[name] = wall
            print(f"| {name} | {wall:.2f} | {seconds / wall:.0f}× | {rss:.0f} |")
        ratio = medians["idv mux (sealed)"] / medians["ffmpeg + aes-gcm"]
        print(f"\nidv / peer wall time: {ratio:.2f} (target ≤ 1.00)")

        if args.memory_minutes:
            camera, cti = media(args.bins, args.memory_minutes, args.cache)
            wall, rss = idv_mux(args.bins, camera, cti, args.memory_minutes, work)
            print(f"\n{args.memory_minutes}-minute call: idv mux {wall:.1f} s "
                  f"({args.memory_minutes * 60 / wall:.0f}× realtime), peak RSS {rss:.0f} MiB "
                  f"(target < 128)")


if __name__ == "__main__":
    main()
