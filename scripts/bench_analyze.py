#!/usr/bin/env python3
"""Benchmark of `calm analyze` on a generated trace: 1 GiB of mapped memory, 10,000 samples.

Method: generate a trace with the real TraceWriter (two processes of 512 MiB each, hot/warm/cold
pages, map snapshots that change every 2,500 samples), then run each phase in its own child
process so that its peak RSS (ru_maxrss) is its own:
- baseline: a plain pass over all events with the reader (`Trace.iter_chunks`, summing the vpns),
  the least any streaming analysis must do;
- analyze: `analyzer.analyze()` (both streaming passes, mapped counts, regions, attribution);
- outputs: analyze + summary.json/CSVs + all plots (what `calm analyze` does).
Reported: wall time, peak RSS, and peak RSS above the process's RSS before the phase started
(imports excluded). Usage: python scripts/bench_analyze.py [--keep DIR] [--samples N] [--mib M]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calm.core.argtypes import OneLineErrorParser  # noqa: E402

PAGE = 4096


def generate(path: Path, samples: int, mib: int, seed: int = 1) -> dict:
    """Writes the benchmark trace; returns its shape (events, pages, file size)."""
    from calm.trace.maps import MapsTable
    from calm.trace.writer import TraceWriter

    rng = np.random.default_rng(seed)
    per_process = mib * (1 << 20) // PAGE // 2
    w = TraceWriter(path, force=True, attrs={
        "page_size": PAGE, "backend": "hash", "interval": 0.1, "kernel_release": platform.release(),
        "hostname": "bench", "start_time": "", "start_time_unix": 0.0, "start_monotonic": 0.0,
        "tool_version": "bench", "command": [],
    })
    rows, bases = [], []
    for i in range(2):
        rows.append(w.open_process(pid=1000 + i, ppid=1, start_time_unix=0.0, name=f"worker{i}",
                                   cmdline=[f"worker{i}"], exe=""))
        bases.append(0x7F0000000 // PAGE + i * (per_process + 4096))
    hot, warm = per_process // 128, per_process // 16  # p 0.5 and 0.05; the rest p 0.001
    events = 0
    for s in range(samples):
        if s % 2500 == 0:  # the map changes: a small extra region comes and goes
            for row, base in zip(rows, bases):
                extra = 16 * (1 + (s // 2500) % 2)
                starts = np.array([base, base + per_process + 16], dtype=np.uint64) * PAGE
                ends = np.array([base + per_process, base + per_process + 16 + extra], dtype=np.uint64) * PAGE
                w.add_maps(row, s, MapsTable(starts, ends, ["rw-p", "rw-p"], np.zeros(2, np.uint64),
                                             np.zeros(2, np.uint64), ["", ""]))
        per = {}
        for row, base in zip(rows, bases):
            cold_n = rng.binomial(per_process - hot - warm, 0.001)
            dirty = np.concatenate((
                np.flatnonzero(rng.random(hot) < 0.5),
                hot + np.flatnonzero(rng.random(warm) < 0.05),
                rng.integers(hot + warm, per_process, cold_n),
            ))
            v = np.unique(dirty).astype(np.uint64) + np.uint64(base)
            events += v.size
            per[row] = (v, per_process)
        w.add_sample(s * 0.1, (s + 1) * 0.1, per)
        if s % 200 == 199:
            w.flush()
    w.close(status="complete", end_reason="benchmark")
    return {"events": events, "mapped_mib": mib, "samples": samples, "file_mib": path.stat().st_size / 2**20}


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE // 1024


def run_phase(phase: str, trace: Path, out_dir: Path) -> dict:
    """Runs one phase in this (child) process and returns its time and memory."""
    from calm.analyzer import analyze
    from calm.analyzer.compute import CHUNK_EVENTS
    from calm.trace.reader import Trace

    if phase == "outputs":
        from calm.analyzer import outputs, plots  # noqa: F401 (import cost outside the timing)
    before = _rss_kib()
    t0 = time.perf_counter()
    if phase == "baseline":
        total = 0
        with Trace(trace) as t:
            for chunk in t.iter_chunks(CHUNK_EVENTS):
                total += int(chunk.vpn.sum(dtype=np.uint64) & np.uint64(0xFFFF))
        result = {"checksum": total}
    else:
        a = analyze(trace)
        result = {"distinct_pages": len(a.pages)}
        if phase == "outputs":
            out_dir.mkdir(parents=True, exist_ok=True)
            outputs.write_data(a, out_dir)
            plots.write_plots(a, out_dir)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"phase": phase, "seconds": seconds, "peak_rss_mib": peak / 1024,
            "peak_above_start_mib": (peak - before) / 1024, **result}


def main() -> int:
    parser = OneLineErrorParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--mib", type=int, default=1024, help="mapped memory in MiB (two processes)")
    parser.add_argument("--keep", type=Path, help="directory to keep the trace and outputs in")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--trace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.trace, args.trace.parent / "analysis")))
        return 0
    work = args.keep or Path(tempfile.mkdtemp(prefix="calm-bench-analyze-"))
    work.mkdir(parents=True, exist_ok=True)
    trace = work / "bench.h5"
    t0 = time.perf_counter()
    shape = generate(trace, args.samples, args.mib)
    print(f"generated {trace}: {shape['samples']} samples, {shape['mapped_mib']} MiB mapped, "
          f"{shape['events']:,} dirty-page events, {shape['file_mib']:.1f} MiB file "
          f"({time.perf_counter() - t0:.1f} s)")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    results = []
    for phase in ("baseline", "analyze", "outputs"):
        proc = subprocess.run([sys.executable, __file__, "--phase", phase, "--trace", str(trace)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{phase:9s} {r['seconds']:7.2f} s   peak RSS {r['peak_rss_mib']:7.1f} MiB "
              f"({r['peak_above_start_mib']:6.1f} MiB above start)")
    base = results[0]["seconds"]
    print(f"analyze / baseline time: {results[1]['seconds'] / base:.2f}x; "
          f"with outputs: {results[2]['seconds'] / base:.2f}x; "
          f"distinct pages {results[1]['distinct_pages']:,}")
    if not args.keep:
        for p in sorted(work.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
