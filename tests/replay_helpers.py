"""Builders of real trace files for the replay tests (written with the real TraceWriter)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from calm.trace.writer import TraceWriter

PAGE = 4096
BASE = 0x1000


def write_trace(path: Path, steps: Sequence[Sequence[int]] | Callable[[int], Sequence[int]],
                n_steps: int | None = None, interval: float = 0.1, two_processes: bool = False) -> Path:
    """A trace whose step s dirties page numbers `steps[s]` (or `steps(s)`), offsets from BASE.

    With `two_processes`, odd page numbers belong to a second process (same vpns + BASE), so the
    footprint spans two rows."""
    n = len(steps) if n_steps is None else n_steps
    w = TraceWriter(path, force=True, attrs={
        "page_size": PAGE, "backend": "hash", "interval": interval, "kernel_release": "test",
        "hostname": "test", "start_time": "2026-01-01T00:00:00Z", "start_time_unix": 0.0,
        "start_monotonic": 0.0, "tool_version": "test", "command": []})
    a = w.open_process(pid=10, ppid=1, start_time_unix=0, name="a", cmdline=["a"], exe="/a")
    b = w.open_process(pid=11, ppid=1, start_time_unix=0, name="b", cmdline=["b"], exe="/b") if two_processes else None
    for s in range(n):
        pages = np.unique(np.asarray(steps(s) if callable(steps) else steps[s], dtype=np.int64))
        per = {}
        if two_processes:
            per[a] = ((pages[pages % 2 == 0] + BASE).astype(np.uint64), 10)
            per[b] = ((pages[pages % 2 == 1] + BASE).astype(np.uint64), 10)
        else:
            per[a] = ((pages + BASE).astype(np.uint64), 10)
        w.add_sample(s * interval, (s + 1) * interval, per)
    w.close(status="complete", end_reason="test")
    return path


def hot_set(first: int, count: int) -> Callable[[int], list[int]]:
    """Every step writes the same `count` pages starting at `first`."""
    pages = list(range(first, first + count))
    return lambda s: pages
