"""Which pages of a process's scanned regions are resident, and which hold only zeros, as runs.

Why: replaying a trace on its own memory (`calm replay -s trace@RATE`) needs to know which pages
a migration engine would find empty: QEMU sends a page of zeros as a header only, so a guest's
never-touched RAM costs almost nothing. A backend reads this at its baseline (the start of the
process's recording) and the trace keeps it as runs (first page, length, state) that cover the
scanned regions whole (`calm.trace.format.RESIDENCY_*`). Runs, not pages: a 1 TiB guest whose
RAM was never touched is one run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calm.collector.procfs import PAGE_SHIFT
from calm.trace.format import RESIDENCY_ABSENT, RESIDENCY_RESIDENT, RESIDENCY_ZERO
from calm.trace.maps import MapsTable


@dataclass
class Residency:
    """Runs covering the scanned regions: pages [start_vpn, start_vpn + pages) in `state`."""

    start_vpn: np.ndarray  # uint64
    pages: np.ndarray  # uint64
    state: np.ndarray  # uint8

    def count(self, state: int) -> int:
        return int(self.pages[self.state == state].sum())


def from_ranges(scan: MapsTable, start: np.ndarray, end: np.ndarray, state: np.ndarray) -> Residency:
    """Runs from the resident page ranges [start, end) (sorted, disjoint, inside the regions of
    `scan`) with their states; every other page of the regions is absent."""
    lo = (np.asarray(scan.start, dtype=np.uint64) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    hi = (np.asarray(scan.end, dtype=np.uint64) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    start, end = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
    state = np.asarray(state, dtype=np.uint8)
    if start.size == 0:  # nothing resident: every region is one absent run
        keep = hi > lo
        return Residency(lo[keep].astype(np.uint64), (hi - lo)[keep].astype(np.uint64),
                         np.full(int(keep.sum()), RESIDENCY_ABSENT, dtype=np.uint8))
    region = np.searchsorted(lo, start, side="right") - 1
    first = np.ones(start.size, dtype=bool)
    first[1:] = region[1:] != region[:-1]
    last = np.ones(start.size, dtype=bool)
    last[:-1] = region[1:] != region[:-1]
    before = np.where(first, lo[region], np.concatenate(([0], end[:-1])))
    gap_lead = before < start  # absent pages before each resident range
    gap_tail = last & (end < hi[region])  # absent pages after the last range of a region
    empty = np.setdiff1d(np.arange(lo.size), region)  # regions with nothing resident
    starts = np.concatenate((start, before[gap_lead], end[gap_tail], lo[empty]))
    ends = np.concatenate((end, start[gap_lead], hi[region][gap_tail], hi[empty]))
    states = np.concatenate((state, np.full(int(gap_lead.sum() + gap_tail.sum() + empty.size), RESIDENCY_ABSENT,
                                            dtype=np.uint8)))
    order = np.argsort(starts, kind="stable")
    keep = ends[order] > starts[order]
    s, e, st = starts[order][keep], ends[order][keep], states[order][keep]
    return Residency(s.astype(np.uint64), (e - s).astype(np.uint64), st)


def from_pages(scan: MapsTable, vpns: np.ndarray, zero: np.ndarray) -> Residency:
    """Runs from the sorted resident pages `vpns` and whether each held only zeros."""
    v = np.asarray(vpns, dtype=np.int64)
    state = np.where(np.asarray(zero, dtype=bool), RESIDENCY_ZERO, RESIDENCY_RESIDENT).astype(np.uint8)
    if v.size == 0:
        return from_ranges(scan, v, v, state)
    new = np.ones(v.size, dtype=bool)
    new[1:] = (np.diff(v) != 1) | (state[1:] != state[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:], v.size) - 1
    return from_ranges(scan, v[first], v[last] + 1, state[first])
