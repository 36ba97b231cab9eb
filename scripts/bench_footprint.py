#!/usr/bin/env python3
"""A service's resident memory, each page once: Pss from smaps_rollup against PFNs from pagemap.

Target: a parent that fills SIZE MiB of private anonymous memory, then forks WORKERS children that
each write WRITE% of it (breaking copy-on-write there) and keep the rest shared with the parent;
plus one MAP_SHARED region of SHARED MiB all of them map. Two ways to count the tree's resident
pages once, run alternately after a warm-up (medians):
- *Pss*: read /proc/PID/smaps_rollup of every process and add up Pss (what `calm record` does, at
  most once a second; no root needed);
- *PFN*: read the pagemap of every process's mapped regions (8 bytes per page, PFNs need root),
  keep the present pages' PFNs, count the distinct ones (np.unique).
Both counts are printed with the cost: they must agree for pages shared only within the tree.

Usage: python scripts/bench_footprint.py [--size 512] [--workers 8] [--write 10] [--shared 128]
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calm.core.argtypes import OneLineErrorParser  # noqa: E402
from calm.collector import procfs  # noqa: E402
from calm.collector.footprint import pss_pages  # noqa: E402

PFN_MASK = np.uint64((1 << 55) - 1)


def start_tree(size: int, workers: int, write: float, shared: int) -> list[int]:
    """Forks the target tree; returns the pids (parent first). All die with this script."""
    r, w = os.pipe()
    root = os.fork()
    if root:
        os.close(w)
        pids = [root] + [int(x) for x in os.read(r, 4096).split()]
        os.close(r)
        return pids
    os.close(r)
    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGKILL)
    private = mmap.mmap(-1, size << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    common = mmap.mmap(-1, shared << 20, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    for region in (private, common):
        region.madvise(mmap.MADV_NOHUGEPAGE)
        np.frombuffer(region, dtype=np.uint64)[::512] = 1  # one word per page: all resident
    children = []
    for i in range(workers):
        pid = os.fork()
        if pid == 0:
            libc.prctl(1, signal.SIGKILL)
            pages = np.frombuffer(private, dtype=np.uint64).reshape(-1, 512)
            rng = np.random.default_rng(i)
            pages[rng.random(pages.shape[0]) < write, 0] = i + 2  # break copy-on-write there
            while True:
                time.sleep(3600)
        children.append(pid)
    time.sleep(1)  # children write their share (a benchmark, not a test: no handshake needed)
    os.write(w, " ".join(map(str, children)).encode())
    while True:
        time.sleep(3600)


def pss_total(pids: list[int]) -> int:
    return sum(pss_pages(p) for p in pids)


def pfn_total(pids: list[int]) -> int:
    pfns = []
    for pid in pids:
        maps = procfs.read_maps(pid)
        with procfs.Pagemap(pid) as pm:
            for batch in procfs.iter_batches(pm, maps.select(maps.scannable())):
                present = batch.entries[(batch.entries >> np.uint64(63)) == 1]
                pfns.append(present & PFN_MASK)
    return int(np.unique(np.concatenate(pfns)).size)


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="private MiB filled before the fork")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--write", type=float, default=10, help="percent of the private pages each worker writes")
    parser.add_argument("--shared", type=int, default=128, help="MiB of MAP_SHARED memory all map")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_footprint: error: PFNs are only visible to root")
    pids = start_tree(args.size, args.workers, args.write / 100, args.shared)
    try:
        pss_total(pids), pfn_total(pids)
        times: dict[str, list[float]] = {"pss": [], "pfn": []}
        for _ in range(args.repeat):
            for name, fn in (("pss", pss_total), ("pfn", pfn_total)):
                t = time.perf_counter()
                count = fn(pids)
                times[name].append(time.perf_counter() - t)
                times.setdefault(name + "_count", []).append(count)
    finally:
        os.kill(pids[0], signal.SIGKILL)
        os.waitpid(pids[0], 0)
    rss = args.size * (1 + args.workers) + args.shared * (1 + args.workers)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}: {1 + args.workers} "
          f"processes, {args.size} MiB private before the fork, {args.write:g}% written by each worker, "
          f"{args.shared} MiB shared (sum of Rss about {rss:,} MiB)")
    for name, label in (("pss", "sum of Pss (smaps_rollup)"), ("pfn", "distinct PFNs (pagemap)")):
        count = statistics.median(times[name + "_count"])
        print(f"| {label} | {count * procfs.PAGE_SIZE / 2**20:,.0f} MiB | {statistics.median(times[name]) * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
