"""The ground-truth workload's service mode (`--workers N`): a master that forks N workers sharing
one MAP_SHARED region, each also writing its own private memory, with an exact write log.

Why: a service (PostgreSQL, Apache prefork, PHP-FPM, Redis with fork) is several processes sharing
memory. calm must count a shared page once, however many processes map or write it, and keep each
worker's private pages apart. This mode is a service whose every write is known.

Layout: before forking, the master maps `--shared-pages` pages MAP_SHARED|MAP_ANONYMOUS and
`--pages` private pages, and fills both (so they are resident; the private pages are then shared
copy-on-write until a worker writes them). It then forks the workers and only waits. Every
interval a worker runs one write round: private page i with probability p_i (`--profile`, one
phase), shared page j with probability q_j (`--shared-profile`); each write stores (worker, round,
page) in the page's first word, so it always changes the bytes (two workers writing one page in
the same round both change it). Rounds of different workers are not synchronised.

Truth (`--truth FILE.npz`): what `groundtruth` writes, plus `workers` (the worker pids),
`shared_base_vpn`, `shared_pages`, `q` (pages), and at exit the merged write log: `round_start`,
`round_end`, `round_worker` (index of the worker), `written` / `written_end` (private page indices
per round) and `shared_written` / `shared_written_end` (shared page indices per round). The master
writes it after its workers have exited (it forwards SIGTERM/SIGINT to them).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import time
from pathlib import Path

import numpy as np

PAGE_SIZE = mmap.PAGESIZE


def _fill(region: mmap.mmap, pages: int, tag: int) -> np.ndarray:
    words = np.frombuffer(region, dtype=np.uint64).reshape(pages, PAGE_SIZE // 8)
    words[:] = (np.uint64(tag) << np.uint64(48)) | np.arange(1, pages + 1, dtype=np.uint64)[:, None]
    return words


def _worker(index: int, args, private: np.ndarray, shared: np.ndarray, p: np.ndarray, q: np.ndarray,
            ready_fd: int, log_path: Path) -> None:
    """One worker's loop; saves its write log to `log_path` when told to stop."""
    from calm.workloads.groundtruth import StopOnSignal

    stop = StopOnSignal()
    rng = np.random.default_rng([args.seed, index + 1])
    starts, ends, written, shared_written = [], [], [], []
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    t0 = time.monotonic()
    round_no = 0
    tag = np.uint64(index + 1) << np.uint64(56)
    while not stop.set:
        if args.duration and time.monotonic() - t0 >= args.duration:
            break
        mine = np.flatnonzero(rng.random(p.size) < p)
        common = np.flatnonzero(rng.random(q.size) < q)
        value = tag | (np.uint64(round_no + 1) << np.uint64(32))
        start = time.monotonic()
        private[mine, 0] = value | mine.astype(np.uint64)
        shared[common, 0] = value | common.astype(np.uint64)
        end = time.monotonic()
        starts.append(start)
        ends.append(end)
        written.append(mine.astype(np.uint32))
        shared_written.append(common.astype(np.uint32))
        round_no += 1
        delay = t0 + round_no * args.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    np.savez(log_path, round_start=np.array(starts), round_end=np.array(ends),
             written=np.concatenate(written) if written else np.empty(0, np.uint32),
             written_end=np.cumsum([w.size for w in written], dtype=np.int64),
             shared_written=np.concatenate(shared_written) if shared_written else np.empty(0, np.uint32),
             shared_written_end=np.cumsum([w.size for w in shared_written], dtype=np.int64))


def run_workers(args, profile_p: np.ndarray, q: np.ndarray) -> int:
    """The master: allocate, fill, fork, wait, merge the logs (see module docstring)."""
    from calm.workloads.groundtruth import allocate

    shared_region = mmap.mmap(-1, args.shared_pages * PAGE_SIZE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        shared_region.madvise(mmap.MADV_NOHUGEPAGE)
    shared = _fill(shared_region, args.shared_pages, 0xFF)
    shared_base = ctypes.addressof(ctypes.c_char.from_buffer(shared_region)) // PAGE_SIZE
    private_region, private, private_base = allocate(args.pages)
    truth_path = Path(args.truth) if args.truth else None
    logs = [Path(f"{truth_path or '/tmp/calm-groundtruth'}.worker{i}.{os.getpid()}.npz")
            for i in range(args.workers)]
    read_fd, write_fd = os.pipe()
    pids: list[int] = []

    def forward(signum: int, frame: object) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)  # before forking: no window where a stop is lost
    signal.signal(signal.SIGINT, forward)
    for i in range(args.workers):
        pid = os.fork()
        if pid == 0:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the master
            os.close(read_fd)
            code = 0
            try:
                _worker(i, args, private, shared, profile_p, q, write_fd, logs[i])
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    os.close(write_fd)
    got = b""
    while len(got) < args.workers:
        chunk = os.read(read_fd, args.workers)
        if not chunk:
            break
        got += chunk
    os.close(read_fd)
    truth = {
        "base_vpn": np.int64(private_base // PAGE_SIZE), "page_size": np.int64(PAGE_SIZE),
        "pages": np.int64(args.pages), "interval": np.float64(args.interval), "p": profile_p[None, :],
        "phase_seconds": np.float64(0.0), "pid": np.int64(os.getpid()), "workers": np.array(pids),
        "shared_base_vpn": np.int64(shared_base), "shared_pages": np.int64(args.shared_pages), "q": q,
        "ready_monotonic": np.float64(time.monotonic()),
    }
    if truth_path:
        np.savez(truth_path, **truth)
    if args.ready_file:
        Path(args.ready_file).write_text(f"{os.getpid()}\n")
    failed = 0
    for pid in pids:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        failed += os.waitstatus_to_exitcode(status) != 0
    if truth_path:
        np.savez(truth_path, **truth, **merge_logs(logs))
    for log in logs:
        log.unlink(missing_ok=True)
    del private, shared
    private_region.close()
    shared_region.close()
    return 1 if failed else 0


def merge_logs(paths: list[Path]) -> dict[str, np.ndarray]:
    """The workers' logs as one, rounds in order of their start."""
    parts = [np.load(p) for p in paths if p.exists()]
    if not parts:
        return {}
    start = np.concatenate([z["round_start"] for z in parts])
    worker = np.concatenate([np.full(z["round_start"].size, i) for i, z in enumerate(parts)])
    order = np.argsort(start, kind="stable")
    out = {"round_start": start[order], "round_end": np.concatenate([z["round_end"] for z in parts])[order],
           "round_worker": worker[order]}
    for name in ("written", "shared_written"):
        rounds = [np.split(z[name], z[f"{name}_end"][:-1]) if z[f"{name}_end"].size else [] for z in parts]
        flat = [r for per_worker in rounds for r in per_worker]
        ordered = [flat[i] for i in order.tolist()]
        out[name] = np.concatenate(ordered) if ordered else np.empty(0, np.uint32)
        out[f"{name}_end"] = np.cumsum([r.size for r in ordered], dtype=np.int64)
    return out
