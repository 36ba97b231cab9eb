"""Turns a calm trace into per-step sets of dirtied *footprint* pages, streaming.

Why: the simulator needs, for every step, which pages were written. A trace names pages by
(process row, virtual page number); the replay treats all followed processes together as the
machine to migrate. Two streaming passes over `Trace.iter_chunks` (the trace is never loaded
whole) build:

1. the footprint: the sorted distinct (process, vpn) pairs ever dirtied, F of them;
2. per step s, the footprint indices dirtied in s, stored compressed-sparse (offsets per step +
   one int32/int64 index per dirty event: 4-8 bytes per event, never a pages x samples matrix).

Mapping onto a RAM of M pages (`ram_index`) is then a vectorised formula, so one MappedTrace
serves every scenario. Time: one step = one trace sample; its length in seconds is the mean of
`Trace.sample_periods()` (the time between consecutive reads), `step_seconds`. Samples of
unequal periods are replayed as equal steps: the replay does not stretch time.

`skip_seconds` drops the start of a recording: a service that has just started (or a recorder
that has just attached) first fills its heap and caches, and a looped trace would otherwise
repeat that fill on every pass as if it were the steady state. Samples whose period began
before the skip are left out and step 0 is the first sample after it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from calm.core.errors import CalmError
from calm.trace.keys import make_keys
from calm.trace.reader import Trace



@dataclass
class MappedTrace:
    """Per-step dirty footprint pages of a trace (CSR) and what the replay needs to know about it."""

    path: str
    page_size: int
    step_seconds: float
    n_steps: int
    footprint: int  # F: distinct pages ever dirtied
    step_offsets: np.ndarray  # int64[n_steps + 1]
    pages: np.ndarray  # footprint indices, step by step (order within a step is irrelevant)
    write_counts: np.ndarray  # int64[F]: steps in which each footprint page was dirtied
    skipped_samples: int = 0  # trace samples left out at the start (see skip_seconds)
    skipped_seconds: float = 0.0

    def step_pages(self, step: int) -> np.ndarray:
        """Footprint indices dirtied in trace step `step` (0 <= step < n_steps)."""
        return self.pages[self.step_offsets[step]:self.step_offsets[step + 1]]

    @property
    def n_events(self) -> int:
        return int(self.step_offsets[-1])

    def mean_p(self, n_pages: int) -> float:
        """Uniform-equivalent p on a RAM of n_pages: dirty events / (pages x steps)."""
        return self.n_events / (n_pages * self.n_steps) if self.n_steps else 0.0

    def ram_index(self, n_pages: int) -> np.ndarray:
        """Footprint index j -> RAM page floor(j M / F): spread evenly, order kept (see `check_fits`)."""
        check_fits(self.footprint, n_pages, self.page_size)
        return (np.arange(self.footprint, dtype=np.int64) * n_pages) // max(self.footprint, 1)

    def describe(self) -> dict:
        return {"path": self.path, "page_size": self.page_size, "step_seconds": self.step_seconds,
                "n_steps": self.n_steps, "footprint_pages": self.footprint, "dirty_events": self.n_events,
                "skipped_samples": self.skipped_samples, "skipped_seconds": self.skipped_seconds}


def check_fits(footprint: int, n_pages: int, page_size: int) -> None:
    if footprint > n_pages:
        need = footprint * page_size
        raise CalmError(
            f"RAM of {n_pages} pages ({n_pages * page_size} bytes) is smaller than the trace's dirtied "
            f"footprint of {footprint} pages ({need / 2**20:.1f} MiB); give a RAM of at least that size"
        )


def first_sample_after(trace: Trace, skip_seconds: float) -> int:
    """The first sample whose period (from the previous read on) begins at least `skip_seconds`
    after the trace's first sample began; a CalmError if the trace ends before that."""
    if skip_seconds <= 0:
        return 0
    t0 = float(trace.t_start[0])
    period_start = np.concatenate(([t0], trace.t_end[:-1])) - t0
    first = int(np.searchsorted(period_start, skip_seconds, side="left"))
    if first >= trace.n_samples:
        length = float(trace.t_end[-1]) - t0
        raise CalmError(f"--skip {skip_seconds:g}s leaves nothing to replay: the trace covers only "
                        f"{length:.3g} s")
    return first


def map_trace(path: str | os.PathLike, max_events: int = 1 << 22, skip_seconds: float = 0.0) -> MappedTrace:
    """Reads a trace in two streaming passes (see module docstring)."""
    with Trace(path) as trace:
        if trace.n_samples == 0:
            raise CalmError(f"trace {path} has no samples to replay")
        first = first_sample_after(trace, skip_seconds)
        n_steps = trace.n_samples - first
        footprint = np.empty(0, np.uint64)
        for chunk in trace.iter_chunks(max_events, first_sample=first):
            footprint = np.union1d(footprint, np.unique(make_keys(chunk.event_process, chunk.vpn)))
        index_type = np.int32 if footprint.size < 2**31 else np.int64
        counts = np.zeros(n_steps, dtype=np.int64)
        parts = []
        for chunk in trace.iter_chunks(max_events, first_sample=first):
            parts.append(np.searchsorted(footprint, make_keys(chunk.event_process, chunk.vpn)).astype(index_type))
            counts[chunk.first_sample - first:chunk.stop_sample - first] += np.bincount(
                chunk.event_sample - chunk.first_sample, minlength=chunk.stop_sample - chunk.first_sample)
        pages = np.concatenate(parts) if parts else np.empty(0, index_type)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        # A sample stands for the writes of one period between reads (Trace.sample_periods);
        # the simulator needs one step length, so it uses the mean period.
        periods = trace.sample_periods()
        step_seconds = float(np.mean(periods[first:]))
        if not step_seconds > 0:
            raise CalmError(f"trace {path} has no usable sampling interval")
        return MappedTrace(str(path), trace.page_size, step_seconds, n_steps,
                           int(footprint.size), offsets, pages,
                           np.bincount(pages, minlength=footprint.size).astype(np.int64),
                           skipped_samples=first, skipped_seconds=float(np.sum(periods[:first])))
