"""Turns a calm trace into per-step sets of dirtied *footprint* pages, streaming.

Why: the simulator needs, for every step, which pages were written. The replay treats all followed
processes together as the machine to migrate, and migrates each page of it once: pages are named in
the service page space (`calm.trace.service`), where a page of a MAP_SHARED object (PostgreSQL's
shared buffers, Apache's scoreboard) is one page however many processes map or write it, and a
private page belongs to its process. Two streaming passes over `Trace.iter_chunks` (the trace is
never loaded whole) build:

1. the footprint: the sorted distinct service pages ever dirtied, F of them;
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
from dataclasses import dataclass, field

import numpy as np

from calm.core.errors import CalmError
from calm.trace.format import RESIDENCY_RESIDENT
from calm.trace.reader import Trace
from calm.trace.service import ServiceSpace, distinct_per_sample

FEW_STEPS = 30  # fewer samples than this left after --skip: the replay says so
IDLE_FRACTION = 0.05  # a step with fewer dirty pages than this share of the mean step is idle



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
    recording: dict = field(default_factory=dict)  # which recording this is (`Trace.identity`)
    keys: np.ndarray | None = None  # uint64[F]: each footprint page's (process, vpn) key (calm.trace.keys)
    residency: dict | None = None  # resident memory at the start, as service-key runs (`_resident_runs`); None before minor 1
    written_before: np.ndarray | None = None  # keys written in the samples --skip left out
    backend: str = ""
    resident_pages: int | None = None  # the service's resident memory, each page once (max of
    # the per-sample sums of Pss over the kept samples); None for a trace without it (format 1.0)
    idle_tail_steps: int = 0  # the trace ends with this many idle steps (see `idle_tail`)
    notes: list[str] = field(default_factory=list)  # what the replay should say about this trace

    def fits(self, n_pages: int) -> bool:
        return self.footprint <= n_pages
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
                "backend": self.backend, "residency_recorded": self.residency is not None,
                "n_steps": self.n_steps, "footprint_pages": self.footprint, "dirty_events": self.n_events,
                "skipped_samples": self.skipped_samples, "skipped_seconds": self.skipped_seconds,
                "recording": self.recording, "resident_pages": self.resident_pages,
                "idle_tail_steps": self.idle_tail_steps, "notes": list(self.notes)}


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
        space = ServiceSpace(trace)
        footprint = np.empty(0, np.uint64)
        for chunk in trace.iter_chunks(max_events, first_sample=first):
            keys, _ = space.map_chunk(chunk)
            footprint = np.union1d(footprint, np.unique(keys))
        index_type = np.int32 if footprint.size < 2**31 else np.int64
        counts = np.zeros(n_steps, dtype=np.int64)
        parts = []
        for chunk in trace.iter_chunks(max_events, first_sample=first):
            keys, shared = space.map_chunk(chunk)
            sample, keys = distinct_per_sample(chunk.event_sample, keys, shared)  # a shared page once per step
            order = np.argsort(sample, kind="stable")
            sample, keys = sample[order], keys[order]
            parts.append(np.searchsorted(footprint, keys).astype(index_type))
            counts[chunk.first_sample - first:chunk.stop_sample - first] += np.bincount(
                sample - chunk.first_sample, minlength=chunk.stop_sample - chunk.first_sample)
        pages = np.concatenate(parts) if parts else np.empty(0, index_type)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        # A sample stands for the writes of one period between reads (Trace.sample_periods);
        # the simulator needs one step length, so it uses the mean period.
        periods = trace.sample_periods()
        step_seconds = float(np.mean(periods[first:]))
        if not step_seconds > 0:
            raise CalmError(f"trace {path} has no usable sampling interval")
        residency = _resident_runs(space, trace.residency())
        written_before = None
        if residency is not None and first:  # pages the left-out start wrote: RAM, and not zero any more
            written_before = np.empty(0, np.uint64)
            for chunk in trace.iter_chunks(max_events, stop_sample=first):
                written_before = np.union1d(written_before, space.map_chunk(chunk)[0])
        resident = _resident_pages(trace, first)
        mapped = MappedTrace(str(path), trace.page_size, step_seconds, n_steps,
                             int(footprint.size), offsets, pages,
                             np.bincount(pages, minlength=footprint.size).astype(np.int64),
                             skipped_samples=first, skipped_seconds=float(np.sum(periods[:first])),
                             recording=trace.identity, keys=footprint, residency=residency,
                             written_before=written_before, backend=trace.info.backend,
                             resident_pages=resident, idle_tail_steps=idle_tail(counts))
        mapped.notes = _notes(mapped, trace.n_samples, skip_seconds)
        return mapped


def _resident_runs(space: ServiceSpace, res: dict | None) -> dict | None:
    """The memory each process had when its recording began (its earliest residency snapshot),
    as runs of service keys: {"start", "stop" (uint64 keys), "state"}, sorted and disjoint. A
    shared object mapped by several processes is one memory: overlapping runs are merged, and a
    merged run is resident where any of its parts was (a page one process saw resident is data)."""
    if res is None:
        return None
    proc, sample = res["process"].astype(np.int64), res["sample"].astype(np.int64)
    earliest = np.full(int(proc.max()) + 1 if proc.size else 0, np.iinfo(np.int64).max)
    np.minimum.at(earliest, proc, sample)
    rows = np.flatnonzero(sample == earliest[proc])
    keys, length, src = space.map_runs(sample[rows], proc[rows], res["start_vpn"][rows], res["pages"][rows])
    state = res["state"][rows][src]
    keep = length > 0
    keys, length, state = keys[keep], length[keep], state[keep]
    order = np.lexsort((-state.astype(np.int64), keys))  # by key; among equal starts the resident first
    start, stop, state = keys[order], keys[order] + length[order].astype(np.uint64), state[order]
    if start.size > 1:
        reach = np.maximum.accumulate(stop)
        new = np.concatenate(([True], start[1:] >= reach[:-1]))
        if not new.all():  # shared runs seen by several processes: one run per union, resident if any is
            group = np.cumsum(new) - 1
            resident = np.zeros(int(group[-1]) + 1, dtype=bool)
            np.logical_or.at(resident, group, state == RESIDENCY_RESIDENT)
            first_state = state[new]
            start, stop = start[new], np.maximum.reduceat(stop, np.flatnonzero(new))
            state = np.where(resident, np.uint8(RESIDENCY_RESIDENT), first_state).astype(state.dtype)
    return {"start": start, "stop": stop, "state": state}


def _resident_pages(trace: Trace, first: int) -> int | None:
    """The most resident memory the service had (sum of its processes' Pss) in the kept samples."""
    if trace.segment_pss is None:
        return None
    keep = trace.segment_sample >= first
    per_sample = np.bincount(trace.segment_sample[keep], weights=trace.segment_pss[keep].astype(np.float64),
                             minlength=trace.n_samples)
    return int(per_sample.max()) if per_sample.size else None


def idle_tail(counts: np.ndarray) -> int:
    """How many steps at the end have (almost) no dirty page: fewer than IDLE_FRACTION of the mean
    step of the trace. A looped replay plays them as part of the workload."""
    if counts.size == 0:
        return 0
    busy = counts > IDLE_FRACTION * counts.mean()
    last_busy = np.flatnonzero(busy)
    return int(counts.size - 1 - last_busy[-1]) if last_busy.size else 0


def _notes(m: MappedTrace, n_samples: int, skip_seconds: float) -> list[str]:
    notes = []
    if skip_seconds > 0 and (m.n_steps < FEW_STEPS or m.n_steps < n_samples / 4):
        notes.append(f"--skip {skip_seconds:g}s leaves only {m.n_steps} of the trace's {n_samples} samples "
                     f"({m.n_steps * m.step_seconds:.3g} s) to replay: the result rests on little data")
    elif m.n_steps < FEW_STEPS:
        notes.append(f"the trace has only {m.n_steps} samples ({m.n_steps * m.step_seconds:.3g} s): "
                     "the result rests on little data")
    return notes
