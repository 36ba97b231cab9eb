"""Builders of small real trace files for the analyzer tests (written with the real TraceWriter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from collector.procfs import MapsTable
from collector.trace_writer import TraceWriter

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
