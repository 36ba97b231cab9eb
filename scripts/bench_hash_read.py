#!/usr/bin/env python3
"""The hash backend at the read limit: its per-round cost against a bare process_vm_readv of the
same ranges, measured in the same run on the same target.

Target: a child process holding SIZE MiB of written anonymous memory (no THP). Per round, run
alternately (so load from other jobs hits all alike), after a warm-up:
- *bare read*: process_vm_readv of exactly the pages the backend hashes, in 16 MiB calls (the
  fastest way to copy them here) into one reused buffer; nothing else. The bound.
- *read + hash*: `PageReader.read_hash` on the same pages (copy in L2-sized blocks, hash each block
  right after its copy: the backend's inner loop).
- *backend round*: `HashBackend.sample()` + the shared pass, everything a round does (maps, pagemap,
  read + hash, compare).
- for reference: a bare read of the same pages through /proc/PID/mem, and numpy's matrix-vector
  hash after that read (the backend before issue 13).
Medians of wall and CPU time; ratios against the bare read.

With --blocks, instead: read + hash of the largest target with the reader's loop compiled for each
block size (pages copied per syscall and hashed before the next), against the bare read; this is
how page_reader.BLOCK_PAGES was chosen.

With --walks, instead: the two ways of finding the largest target's present pages, the full
pagemap read the backend uses against PAGEMAP_SCAN asking for present-or-swapped ranges (Linux >=
6.8), over the same regions.

Usage: python scripts/bench_hash_read.py [--sizes 64,256,1024] [--repeat 15] [--blocks 32,64,128 | --walks]
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calm.core.argtypes import OneLineErrorParser  # noqa: E402
from calm.collector import page_hash, present_pages, procfs  # noqa: E402
from calm.collector.ranges import runs  # noqa: E402
from calm.collector.backends import HashBackend  # noqa: E402
from calm.collector.page_reader import PageReader, _process_vm_readv, hash_implementation  # noqa: E402

PAGE = procfs.PAGE_SIZE
CHUNK = 16 << 20


def start_target(mib: int) -> int:
    """A child with `mib` MiB written anonymous memory; returns its pid (it waits for SIGKILL)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG: die with the benchmark
        region = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region.madvise(mmap.MADV_NOHUGEPAGE)
        words = np.frombuffer(region, dtype=np.uint64)
        words[:] = np.random.default_rng(1).integers(1, 2**63, words.size, dtype=np.uint64)
        os.write(w, b"1")
        while True:
            time.sleep(3600)
    os.close(w)
    os.read(r, 1)
    return pid


def hashed_pages(pid: int) -> np.ndarray:
    """The present private pages of the target's writable regions: what the backend hashes."""
    maps = procfs.read_maps(pid)
    scan = maps.select(maps.scannable() & maps.writable() & ~maps.shared())
    found = []
    with procfs.Pagemap(pid) as pm:
        for batch in procfs.iter_batches(pm, scan):
            _, b7 = procfs.flag_bytes(batch.entries)
            found.append(batch.vpns(np.flatnonzero(b7 >= procfs.B7_PRESENT)))
    return np.concatenate(found)


def bare_read(pid: int, vpns: np.ndarray, buf: np.ndarray) -> None:
    """process_vm_readv of the pages, up to 16 MiB and 1024 runs per call."""
    first, lengths = runs(vpns)
    remote = (ctypes.c_uint64 * 2048)()
    local = (ctypes.c_uint64 * 2)(buf.ctypes.data, 0)
    i = done = 0  # run, pages of it already read
    while i < first.size:
        n_iov = filled = 0
        while i < first.size and n_iov < 1024 and filled < CHUNK // PAGE:
            take = min(int(lengths[i]) - done, CHUNK // PAGE - filled)
            remote[2 * n_iov], remote[2 * n_iov + 1] = (int(first[i]) + done) * PAGE, take * PAGE
            n_iov, filled, done = n_iov + 1, filled + take, done + take
            if done == lengths[i]:
                i, done = i + 1, 0
        local[1] = filled * PAGE
        got = _process_vm_readv(pid, ctypes.addressof(local), 1, ctypes.addressof(remote), n_iov, 0)
        assert got == filled * PAGE, (got, filled)


def mem_read(fd: int, vpns: np.ndarray, buf: np.ndarray, hash_it: bool, keys: np.ndarray) -> None:
    first, lengths = runs(vpns)
    view = memoryview(buf).cast("B")
    for a, n in zip(first.tolist(), lengths.tolist()):
        for k in range(0, n, CHUNK // PAGE):
            m = min(CHUNK // PAGE, n - k)
            os.preadv(fd, [view[:m * PAGE]], (a + k) * PAGE)
            if hash_it:
                page_hash.hash_pages(buf[:m * PAGE // 8], keys)


def measure(fns: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each function, run in turn `repeat` times after a warm-up."""
    for f in fns.values():
        f()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            c, t = time.process_time(), time.perf_counter()
            f()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def on_target(mib: int, make_fns, repeat: int) -> tuple[dict[str, tuple[float, float]], dict]:
    """Starts a target, measures what make_fns(pid, facts) returns (filling `facts` for the
    table's title), stops the target."""
    pid = start_target(mib)
    facts: dict = {}
    try:
        return measure(make_fns(pid, facts), repeat), facts
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def block_sweep(mib: int, blocks: list[int], repeat: int) -> None:
    """Read + hash with the loop compiled for each block size, against the bare read."""
    import types

    import numba

    from calm.collector import page_reader

    t = numba.types
    external = t.ExternalFunction("process_vm_readv", t.intp(t.int32, t.uintp, t.uintp, t.uintp, t.uintp, t.uintp))

    def make_fns(pid: int, facts: dict) -> dict:
        vpns = facts["pages"] = hashed_pages(pid)
        first, lengths = runs(vpns)
        run_addr, run_pages = first * np.uint64(PAGE), lengths.astype(np.int64)
        keys, out, big = page_hash.page_keys(PAGE), np.zeros(vpns.size, np.uint64), np.empty(CHUNK // 8, np.uint64)
        fns = {"bare": lambda: bare_read(pid, vpns, big)}
        for pages in blocks:
            code = types.FunctionType(page_reader._read_hash_loop.__code__,
                                      {**vars(page_reader), "_pvr": external, "BLOCK_PAGES": pages})
            loop = numba.njit(nogil=True, boundscheck=False)(code)
            buf, local, remote = np.empty(pages * PAGE // 8, np.uint64), np.zeros(2, np.uint64), np.zeros(2048, np.uint64)
            fns[f"{pages} pages"] = (lambda loop=loop, buf=buf, local=local, remote=remote:
                                     loop(pid, run_addr, run_pages, 0, 0, buf, local, remote, keys, out, 0))
        return fns

    r, facts = on_target(mib, make_fns, repeat)
    print(f"| block ({mib} MiB target, {facts['pages'].size:,} pages) | read + hash, CPU | / bare read |")
    print("|---|---|---|")
    for name, (_, cpu) in r.items():
        print(f"| {name} | {cpu * 1e3:.1f} ms | {cpu / r['bare'][1]:.2f}x |")


def walks(mib: int, repeat: int) -> None:
    """Full pagemap read against PAGEMAP_SCAN for present ranges, same regions, same run."""
    from calm.collector.pagemap_scan import PAGE_IS_FILE, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PagemapScanner

    wanted = PAGE_IS_PRESENT | PAGE_IS_SWAPPED

    def make_fns(pid: int, facts: dict) -> dict:
        maps = procfs.read_maps(pid)
        scan = maps.select(maps.scannable() & maps.writable())
        bounds = facts["regions"] = list(zip(scan.start.tolist(), scan.end.tolist()))

        def read() -> None:
            with procfs.Pagemap(pid) as pagemap:
                for _ in procfs.iter_batches(pagemap, scan):
                    pass

        def scan_ranges() -> None:
            with procfs.Pagemap(pid) as pagemap:
                scanner = PagemapScanner(pagemap.fd, pid)
                for a, b in bounds:
                    scanner.regions(a, b, 0, wanted, wanted | PAGE_IS_FILE)

        return {"pagemap read": read, "PAGEMAP_SCAN": scan_ranges}

    r, facts = on_target(mib, make_fns, repeat)
    print(f"| finding present pages ({mib} MiB target, {len(facts['regions'])} regions; reading only, "
          "not sorting) | wall | CPU |")
    print("|---|---|---|")
    for name, (wall, cpu) in r.items():
        print(f"| {name} | {wall * 1e3:.1f} ms | {cpu * 1e3:.1f} ms |")


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256,1024", help="target sizes in MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=15)
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--blocks", default="", help="block sizes in pages, comma-separated: sweep them")
    how.add_argument("--walks", action="store_true", help="pagemap read against PAGEMAP_SCAN")
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        blocks = [int(b) for b in args.blocks.split(",")] if args.blocks else []
    except ValueError:
        parser.error("--sizes and --blocks take comma-separated whole numbers")
    if min(sizes) < 1 or (blocks and min(blocks) < 1) or args.repeat < 1:
        parser.error("sizes, blocks and --repeat must be at least 1")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"kernel {platform.release()}, load {os.getloadavg()[0]:.1f}, hash: {hash_implementation()}, "
          f"pages sorted: {present_pages.implementation()}")
    if blocks:
        try:
            block_sweep(max(sizes), blocks, args.repeat)
        except ImportError:
            parser.error("--blocks compiles the reader's loop and needs numba")
        return
    if args.walks:
        from calm.collector.pagemap_scan import ScanUnsupported

        try:
            walks(max(sizes), args.repeat)
        except ScanUnsupported as exc:
            parser.error(f"--walks compares with PAGEMAP_SCAN, which this kernel lacks ({exc})")
        return
    print("| target | pages | bare process_vm_readv | read + hash | ratio | backend round | ratio | "
          "/proc/PID/mem read | + numpy hash (before) | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = page_hash.page_keys(PAGE)
    for mib in sizes:
        pid = start_target(mib)
        try:
            vpns = hashed_pages(pid)
            buf = np.empty(CHUNK // 8, np.uint64)
            reader = PageReader(pid)
            backend = HashBackend(pid)
            backend.start()
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
            r = measure({
                "bare": lambda: bare_read(pid, vpns, buf),
                "read_hash": lambda: reader.read_hash(vpns),
                "round": backend.sample,
                "mem": lambda: mem_read(fd, vpns, buf, False, keys),
                "mem_hash": lambda: mem_read(fd, vpns, buf, True, keys),
            }, args.repeat)
            os.close(fd)
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)

        def cell(k: str) -> str:
            return f"{r[k][0] * 1e3:.1f} ms (CPU {r[k][1] * 1e3:.1f})"

        bare_w, bare_c = r["bare"]
        print(f"| {mib} MiB | {vpns.size:,} | {cell('bare')} | {cell('read_hash')} | "
              f"{r['read_hash'][0] / bare_w:.2f}x wall, {r['read_hash'][1] / bare_c:.2f}x CPU | {cell('round')} | "
              f"{r['round'][0] / bare_w:.2f}x wall, {r['round'][1] / bare_c:.2f}x CPU | {cell('mem')} | "
              f"{cell('mem_hash')} | {r['mem_hash'][0] / bare_w:.2f}x |")


if __name__ == "__main__":
    main()
