"""The analysis's view of a trace as one service: events in service page space, shared objects as
regions, and what recording cost the observer.

Why a module of its own: `compute` streams chunks and builds results; what an event *means* for the
service (which page it is, whether a process wrote it, whether it counts in a per-process view) is
decided here once, for both passes.
"""

from __future__ import annotations

import numpy as np

from calm.analyzer.model import ObserverStats, PageTable
from calm.analyzer.regions import KIND_SHARED, Region
from calm.trace.keys import key_process
from calm.trace.reader import Trace, TraceChunk
from calm.trace.service import ServiceSpace, distinct_per_sample


class ServiceEvents:
    """Turns chunks into (sample, service key) events of the selected processes, each page at most
    once per sample, and (in the first pass) keeps per-sample and per-process counts."""

    def __init__(self, trace: Trace, space: ServiceSpace, rows: list[int]) -> None:
        self.space = space
        self.rows = rows
        self.all_rows = len(rows) == len(trace.processes)
        # a hash trace names no writer for a shared page: a subset of processes cannot claim it
        self.drop_shared = not self.all_rows and not space.writer_known
        self._rows = np.asarray(rows, dtype=np.uint32)
        self.dirty_per_sample = np.zeros(trace.n_samples, dtype=np.int64)
        # per segment: its events that are not that process's own writes (hash: shared pages)
        self.unattributed_per_segment = np.zeros(trace.n_segments, dtype=np.int64)
        self.shared_written: dict[int, int] = {}  # row -> distinct shared pages it wrote (soft-dirty)
        self.writers: dict[int, set[int]] = {}  # shared space -> rows seen writing it (soft-dirty)
        self._written: dict[int, np.ndarray] = {}
        self._segment = 0

    def of(self, chunk: TraceChunk, first_pass: bool = False) -> tuple[np.ndarray, np.ndarray]:
        keys, shared = self.space.map_chunk(chunk)
        sample, process = chunk.event_sample, chunk.event_process
        if first_pass:
            self._count_segments(chunk, shared)
        keep = np.ones(keys.size, dtype=bool) if self.all_rows else np.isin(process, self._rows)
        if self.drop_shared:
            keep &= ~shared
        if not keep.all():
            sample, keys, shared, process = sample[keep], keys[keep], shared[keep], process[keep]
        if first_pass and self.space.writer_known and shared.any():
            self._count_writers(process[shared], keys[shared])
        sample, keys = distinct_per_sample(sample, keys, shared)
        if first_pass:
            self.dirty_per_sample += np.bincount(sample, minlength=self.dirty_per_sample.size)
        return sample, keys

    def _count_segments(self, chunk: TraceChunk, shared: np.ndarray) -> None:
        n = chunk.segment_sample.size
        if not self.space.writer_known and shared.any():
            segment = np.repeat(np.arange(self._segment, self._segment + n), chunk.segment_n_dirty)
            np.add.at(self.unattributed_per_segment, segment[shared], 1)
        self._segment += n

    def _count_writers(self, process: np.ndarray, keys: np.ndarray) -> None:
        for row in np.unique(process).tolist():  # one iteration per process that wrote shared pages
            mine = np.unique(keys[process == row])
            self._written[row] = np.union1d(self._written.get(row, mine[:0]), mine)
            self.shared_written[row] = int(self._written[row].size)
            for sp in np.unique(key_process(mine)).tolist():
                self.writers.setdefault(sp, set()).add(row)


def shared_regions(pages: PageTable, space: ServiceSpace, page_size: int, regions: list[Region],
                   out: np.ndarray) -> None:
    """One region per shared object holding dirtied pages; sets `out` (region index) for its pages."""
    for obj in space.objects:
        sp = space.object_space(obj.index)
        lo, hi = np.searchsorted(pages.process, [sp, sp + 1])
        if hi == lo:
            continue
        first, stop = space.object_extent(obj.index)
        writable = "w" if obj.writable_by else "-"
        out[lo:hi] = len(regions)
        regions.append(Region(sp, first * page_size, stop * page_size, f"r{writable}-s", 0, obj.inode,
                              obj.path, KIND_SHARED, name=obj.label))


def observer_stats(trace: Trace) -> ObserverStats | None:
    """The achieved sampling period and what each round cost calm (None for a 1.0 trace)."""
    costs = trace.round_costs
    if costs is None or trace.n_samples == 0:
        return None
    period = np.diff(trace.t_end)
    if period.size == 0:
        period = np.array([trace.info.interval])
    cpu = np.asarray(costs.cpu_s, dtype=np.float64)
    span = float(trace.t_end[-1] - trace.t_start[0]) if trace.n_samples else 0.0
    return ObserverStats(
        interval=trace.info.interval,
        period_mean=float(period.mean()), period_p95=float(np.percentile(period, 95)),
        read_mean=float(np.mean(costs.read_s)), read_p95=float(np.percentile(costs.read_s, 95)),
        cpu_mean=float(cpu.mean()), cpu_p95=float(np.percentile(cpu, 95)),
        pages_read_mean=float(np.mean(costs.pages_read)), pages_read_max=int(np.max(costs.pages_read)),
        cpu_share=float(cpu.sum() / span) if span > 0 else 0.0,
        late_rounds=int(np.count_nonzero(period > trace.info.interval * 1.1)),
        nice=trace.info.nice,
    )
