#!/usr/bin/env python3
"""Per-sample cost of the soft-dirty backend: full pagemap reads vs the PAGEMAP_SCAN fast path.

Needs a kernel with soft-dirty and PAGEMAP_SCAN (>= 6.8); run it in the 6.12 guest:
    scripts/calm-vm --kernel 6.12 -- python scripts/bench_pagemap_scan.py

Method: this process maps --mib MiB of anonymous memory (THP off for the run, so pages are 4 KiB)
and, for each dirty fraction, repeats: write that fraction of random pages, then take one sample
with method A; write the same pages again, take one sample with method B (order alternates).
A sample = read the map, get the dirty pages, clear soft-dirty (what the backend does each
interval):
  full-read : collector.backends.SoftDirtyBackend.sample() (8 bytes of pagemap per mapped page)
  scan      : the same map read + collector.pagemap_scan.scan_soft_dirty + clear_refs
Both must report the same dirty pages of the buffer. Reported: median ms per sample, and the ratio
full-read / scan measured in the same run.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import statistics
import sys
import time

import numpy as np

from calm.core.argtypes import OneLineErrorParser
from calm.collector import procfs
from calm.collector.backends import SoftDirtyBackend
from calm.collector.pagemap_scan import scan_soft_dirty, scan_supported

THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def scan_sample(backend: SoftDirtyBackend) -> np.ndarray:
    _, scan_maps = backend.maps.read()
    with procfs.Pagemap(backend.pid) as pagemap:
        result = scan_soft_dirty(pagemap.fd, scan_maps.start, scan_maps.end, pid=backend.pid)
    procfs.clear_soft_dirty(backend.pid)
    return result.dirty_vpns


def main() -> int:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="buffer size (default 256)")
    parser.add_argument("--repeats", type=int, default=15, help="samples per method and fraction")
    parser.add_argument("--fractions", default="0.01,0.10", help="dirty fractions (default 0.01,0.10)")
    args = parser.parse_args()
    supported, reason = scan_supported()
    if not supported:
        print(f"bench_pagemap_scan: error: {reason}", file=sys.stderr)
        return 1
    thp_before = open(THP).read().split("[")[1].split("]")[0] if os.path.exists(THP) else None
    if thp_before:
        with open(THP, "w") as f:
            f.write("madvise")
    try:
        pages = args.mib * 256
        buf = mmap.mmap(-1, (pages + 2) * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        # PROT_NONE guard pages: a new anonymous mapping that merged into the buffer's VMA would
        # mark the whole VMA soft-dirty (kernel semantics), and numpy temporaries are mmapped.
        libc = ctypes.CDLL(None, use_errno=True)
        for guard in (address, address + (pages + 1) * mmap.PAGESIZE):
            if libc.mprotect(ctypes.c_void_p(guard), mmap.PAGESIZE, 0) != 0:
                raise OSError(ctypes.get_errno(), "mprotect")
        view = np.frombuffer(buf, dtype=np.uint8)[mmap.PAGESIZE:(pages + 1) * mmap.PAGESIZE]
        view[:: mmap.PAGESIZE] = 1
        base_vpn = (address >> procfs.PAGE_SHIFT) + 1
        backend = SoftDirtyBackend(os.getpid())
        backend.start()
        rng = np.random.default_rng(1)
        print(f"kernel {platform.release()}, {os.cpu_count()} vCPU, buffer {args.mib} MiB "
              f"({pages} pages), {args.repeats} samples per method")
        print(f"{'dirty':>6} {'full-read ms':>13} {'scan ms':>9} {'full/scan':>10}")
        for fraction in (float(x) for x in args.fractions.split(",")):
            times: dict[str, list[float]] = {"full": [], "scan": []}
            for repeat in range(args.repeats):
                chosen = np.sort(rng.choice(pages, int(pages * fraction), replace=False))
                expected = chosen.astype(np.uint64) + np.uint64(base_vpn)
                order = ("full", "scan") if repeat % 2 == 0 else ("scan", "full")
                for method in order:
                    view[chosen * mmap.PAGESIZE] += 1
                    start = time.perf_counter()
                    vpns = backend.sample().dirty_vpns if method == "full" else scan_sample(backend)
                    times[method].append(time.perf_counter() - start)
                    inside = vpns[(vpns >= base_vpn) & (vpns < base_vpn + pages)]
                    if not np.array_equal(inside, expected):
                        print(f"bench_pagemap_scan: error: {method} saw {inside.size} dirty pages, "
                              f"wrote {expected.size}", file=sys.stderr)
                        return 1
            full_ms = statistics.median(times["full"]) * 1e3
            scan_ms = statistics.median(times["scan"]) * 1e3
            print(f"{fraction:>6.0%} {full_ms:>13.2f} {scan_ms:>9.2f} {full_ms / scan_ms:>9.1f}x")
        del view
        buf.close()
    finally:
        if thp_before:
            with open(THP, "w") as f:
                f.write(thp_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
