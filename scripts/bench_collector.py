#!/usr/bin/env python3
"""Per-sample cost of the collector's backends at 64 MiB, 256 MiB and 1 GiB resident targets.

Each backend is compared with a baseline measured in the same run on the same target:
- pagemap path (SoftDirtyBackend.sample: read maps, read pagemap, decode bits, clear_refs) vs a
  plain read of the same pagemap ranges into a buffer;
- hash backend (HashBackend.sample: pagemap, process_vm_readv + hash, compare) vs a plain read of
  the same memory through /proc/PID/mem, and vs a plain in-process copy of a buffer of that size
  (scripts/bench_hash_read.py compares it with a bare process_vm_readv of the same pages).
The target is the ground-truth workload (uniform p = 0.01 every 0.5 s). Also reports the trace
size per dirty-page event of a recording of the service-like workload profile.

Usage: python scripts/bench_collector.py [--sizes 64,256,1024] [--repeat 15]
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calm.core.argtypes import OneLineErrorParser  # noqa: E402
from calm.core.ready import NotReady, wait_for  # noqa: E402
from calm.collector import procfs  # noqa: E402
from calm.collector.ranges import runs  # noqa: E402
from calm.collector.backends import HashBackend, SoftDirtyBackend  # noqa: E402
from calm.trace.reader import Trace  # noqa: E402


def paired_medians(fn, baseline, repeat: int) -> tuple[float, float]:
    """Median seconds of `fn` and of `baseline`, run alternately so that load from other jobs on
    this noisy machine hits both alike."""
    fn()
    baseline()  # warm up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for which, f in enumerate((fn, baseline)):
            t = time.perf_counter()
            f()
            times[which].append(time.perf_counter() - t)
    return statistics.median(times[0]), statistics.median(times[1])


def start_target(tmp: Path, mib: int) -> subprocess.Popen:
    ready = tmp / f"ready-{mib}"
    pages = mib * 2**20 // procfs.PAGE_SIZE
    proc = subprocess.Popen([sys.executable, "-m", "calm.workloads.groundtruth", "--pages", str(pages),
                             "--interval", "0.5", "--profile", "uniform:0.01",
                             "--ready-file", str(ready)], cwd=REPO)
    try:
        wait_for(ready, proc, "the ground-truth workload")
    except NotReady as exc:
        raise SystemExit(f"bench_collector.py: {exc}") from None
    return proc


def plain_pagemap_read(pid: int) -> None:
    maps = procfs.read_maps(pid)
    scan = maps.select(maps.scannable())
    with procfs.Pagemap(pid) as pm:
        for lo, hi in zip((scan.start // procfs.PAGE_SIZE).tolist(), (scan.end // procfs.PAGE_SIZE).tolist()):
            pm.read(lo, hi)


def writable_resident_ranges(pid: int) -> list[tuple[int, int]]:
    """Byte ranges of resident pages of writable regions (what the hash backend reads)."""
    maps = procfs.read_maps(pid)
    scan = maps.select(maps.scannable() & maps.writable())
    ranges = []
    with procfs.Pagemap(pid) as pm:
        for lo, hi in zip((scan.start // procfs.PAGE_SIZE).tolist(), (scan.end // procfs.PAGE_SIZE).tolist()):
            present = np.flatnonzero((pm.read(lo, hi) & procfs.PM_PRESENT) != 0)
            if present.size == 0:
                continue
            first, lengths = runs(present)
            ranges.extend(((lo + a) * procfs.PAGE_SIZE, n * procfs.PAGE_SIZE)
                          for a, n in zip(first.tolist(), lengths.tolist()))
    return ranges


def plain_mem_read(pid: int, ranges: list[tuple[int, int]], buf: np.ndarray) -> None:
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        view = memoryview(buf).cast("B")
        for addr, size in ranges:
            for off in range(0, size, len(view)):
                n = min(len(view), size - off)
                os.preadv(fd, [view[:n]], addr + off)
    finally:
        os.close(fd)


SQLITE_SCRIPT = """
PRAGMA cache_size = -131072;
PRAGMA journal_mode = MEMORY;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 400000)
INSERT INTO t SELECT x, hex(randomblob(40)) FROM c;
""" + "UPDATE t SET v = hex(randomblob(40)) WHERE id % 50 = abs(random()) % 50;\n" * 400


def trace_size(tmp: Path, name: str, command: list[str], seconds: float) -> dict[str, float]:
    """Records `command` and measures the file and the event column per dirty-page event."""
    import h5py

    out = tmp / f"{name}.h5"
    subprocess.run([sys.executable, "-m", "calm", "record", "--backend", "hash", "-q", "--interval",
                    "0.1", "--duration", str(seconds), "-o", str(out), "--", *command],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with Trace(out) as trace:
        events, samples = trace.n_events, trace.n_samples
    with h5py.File(out, "r") as f:
        event_bytes = f["events/vpn_delta"].id.get_storage_size()
    size = out.stat().st_size
    return {"events": events, "samples": samples, "file": size, "file_per_event": size / events,
            "events_per_event": event_bytes / events}


def size_report(tmp: Path) -> list[str]:
    db = tmp / "bench.db"
    script = tmp / "bench.sql"
    script.write_text(SQLITE_SCRIPT)
    cases = [
        ("sqlite3 (400k-row table, random updates)", "sqlite",
         ["sqlite3", str(db), f".read {script}"], 20.0),
        ("calm.workloads.groundtruth --profile service --pages 65536", "workload",
         [sys.executable, "-m", "calm.workloads.groundtruth", "--pages", "65536", "--profile", "service"], 20.0),
    ]
    lines = ["| traced program | samples | dirty-page events | file bytes/event | event column bytes/event |",
             "|---|---|---|---|---|"]
    for label, name, command, seconds in cases:
        r = trace_size(tmp, name, command, seconds)
        lines.append(f"| {label} | {r['samples']} | {r['events']:,} | {r['file_per_event']:.2f} "
                     f"| {r['events_per_event']:.2f} |")
    return lines


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256,1024", help="target sizes in MiB")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"# collector benchmark, {date.today()}, {platform.node()}, {os.cpu_count()} cores, "
          f"kernel {platform.release()}, numpy {np.__version__}")
    print("| target | pagemap path | plain pagemap read | ratio | hash backend | plain /proc/PID/mem read "
          "| hash GB/s | in-process copy GB/s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for mib in (int(x) for x in args.sizes.split(",")):
            proc = start_target(tmp, mib)
            try:
                pid = proc.pid
                soft = SoftDirtyBackend(pid)
                soft.start()
                t_soft, t_plain = paired_medians(soft.sample, lambda: plain_pagemap_read(pid), args.repeat)
                hashing = HashBackend(pid)
                hashing.start()
                ranges = writable_resident_ranges(pid)
                nbytes = sum(size for _, size in ranges)
                buf = np.empty(16 * 2**20 // 8, dtype=np.uint64)
                t_hash, t_mem = paired_medians(hashing.sample, lambda: plain_mem_read(pid, ranges, buf),
                                               args.repeat)
                src = np.ones(nbytes // 8, dtype=np.uint64)
                dst = np.ones_like(src)
                _, t_copy = paired_medians(lambda: None, lambda: np.copyto(dst, src), args.repeat)
            finally:
                proc.terminate()
                proc.wait()
            print(f"| {mib} MiB | {t_soft * 1e3:.2f} ms | {t_plain * 1e3:.2f} ms | {t_soft / t_plain:.2f}x "
                  f"| {t_hash * 1e3:.1f} ms | {t_mem * 1e3:.1f} ms | {nbytes / t_hash / 1e9:.2f} "
                  f"| {nbytes / t_copy / 1e9:.2f} |")
        print("\nTrace size (hash backend, 0.1 s interval, 20 s or until the program exits):")
        print("\n".join(size_report(tmp)))


if __name__ == "__main__":
    main()
