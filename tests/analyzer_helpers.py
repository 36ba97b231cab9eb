"""Builders of small real trace files for the analyzer tests (written with the real TraceWriter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calm.trace.maps import MapsTable
from calm.trace.writer import TraceWriter

PAGE = 4096


def writer(path: Path, interval: float = 0.5) -> TraceWriter:
    return TraceWriter(path, force=True, attrs={
        "page_size": PAGE, "backend": "hash", "interval": interval, "kernel_release": "test",
        "hostname": "test", "start_time": "2026-01-01T00:00:00Z", "start_time_unix": 0.0,
        "start_monotonic": 0.0, "tool_version": "test", "command": [],
    })


def maps(*regions: tuple[int, int, str, str]) -> MapsTable:
    """MapsTable from (start_page, end_page, perms, path) tuples (page numbers, not bytes)."""
    n = len(regions)
    return MapsTable(
        start=np.array([r[0] * PAGE for r in regions], dtype=np.uint64),
        end=np.array([r[1] * PAGE for r in regions], dtype=np.uint64),
        perms=[r[2] for r in regions],
        offset=np.zeros(n, dtype=np.uint64),
        inode=np.zeros(n, dtype=np.uint64),
        path=[r[3] for r in regions],
    )


def vpns(*values: int) -> np.ndarray:
    return np.array(sorted(values), dtype=np.uint64)


def handcrafted_trace(path: Path) -> Path:
    """The small trace whose numbers tests/test_analyzer_exact.py checks by hand.

    pid 10 (row 0), 10 samples of 0.5 s: [heap] pages 100-109 and anonymous 200-203 from sample 0,
    plus anonymous page 300 from sample 5. Page 100 dirty in every sample, 101 in even samples,
    200 from sample 5 on, 300 in samples 7 and 8, and 500 (in no recorded region) in sample 9.
    pid 11 (row 1) lives for samples 0-3 (anonymous 100-103) and dirties 100 and 101 each time.
    """
    w = writer(path)
    a = w.open_process(pid=10, ppid=1, start_time_unix=0, name="a", cmdline=["a"], exe="/a")
    b = w.open_process(pid=11, ppid=10, start_time_unix=0, name="b", cmdline=["b"], exe="/b")
    w.add_maps(a, 0, maps((100, 110, "rw-p", "[heap]"), (200, 204, "rw-p", "")))
    w.add_maps(b, 0, maps((100, 104, "rw-p", "")))
    for s in range(10):
        dirty_a = [100] + ([101] if s % 2 == 0 else []) + ([200] if s >= 5 else [])
        dirty_a += ([300] if s in (7, 8) else []) + ([500] if s == 9 else [])
        per_process = {a: (vpns(*dirty_a), 14)}
        if s < 4:
            per_process[b] = (vpns(100, 101), 4)
        w.add_sample(s * 0.5, (s + 1) * 0.5, per_process)
        if s == 4:
            w.close_process(b, exit_sample=4)
        if s == 4:
            w.add_maps(a, 5, maps((100, 110, "rw-p", "[heap]"), (200, 204, "rw-p", ""),
                                  (300, 301, "rw-p", "")))
    w.close(status="complete", end_reason="test")
    return path
