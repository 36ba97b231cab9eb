"""In how many samples was each page mapped? The denominator of every dirtying probability.

Why this way: a page that exists for 10 of 1,000 samples and is dirty in all 10 is a hot page, not
a 1% page, so probabilities are taken over the samples in which the page was mapped. The trace
holds map snapshots (each valid from its sample until the next snapshot of that process) and each
process's first/last sample. Every (snapshot span, region) pair adds its span length to all pages of
the region; a weighted difference array over region bounds turns that into a step function of the
page number, and one `searchsorted` evaluates it for all dirtied pages at once. Cost is
O(regions x snapshots + pages x log), never pages x samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calm.trace.maps import SKIPPED_PATHS, MapsTable
from calm.trace.reader import Trace


@dataclass
class MapSpan:
    """One map snapshot and the samples [first, stop) of the process's life it describes."""

    first: int
    stop: int
    maps: MapsTable


@dataclass
class ProcessMaps:
    """The map history of one process, clipped to its lifetime in the trace."""

    row: int
    first_sample: int  # -1 if never sampled
    stop_sample: int  # one past its last sample
    spans: list[MapSpan] = field(default_factory=list)

    @property
    def has_maps(self) -> bool:
        return bool(self.spans)

    @property
    def n_samples(self) -> int:
        return max(0, self.stop_sample - self.first_sample)


def load_process_maps(trace: Trace, row: int) -> ProcessMaps:
    """Reads the snapshots of one process and clips them to [first_sample, last_sample].

    The first snapshot is stretched back to the first sample: the collector reads the map when it
    attaches, so a later first snapshot only means the file lost nothing that mattered.
    """
    proc = trace.processes[row]
    if proc.first_sample < 0:
        return ProcessMaps(row, -1, -1)
    first, stop = proc.first_sample, proc.last_sample + 1
    out = ProcessMaps(row, first, stop)
    snapshots = trace.map_snapshots(row)
    for i, (sample, maps) in enumerate(snapshots):
        keep = np.array([p not in SKIPPED_PATHS for p in maps.path], dtype=bool)
        a = first if i == 0 else max(sample, first)
        b = min(snapshots[i + 1][0], stop) if i + 1 < len(snapshots) else stop
        if b > a:
            out.spans.append(MapSpan(a, b, maps.select(keep)))
    return out


def _page_bounds(maps: MapsTable, page_size: int) -> tuple[np.ndarray, np.ndarray]:
    lo = maps.start.astype(np.uint64) // np.uint64(page_size)
    hi = (maps.end.astype(np.uint64) + np.uint64(page_size - 1)) // np.uint64(page_size)
    return lo, hi


def mapped_counts(pmaps: ProcessMaps, vpns: np.ndarray, page_size: int) -> np.ndarray:
    """Samples in which each of `vpns` (uint64) was inside a mapped region of this process.

    Without any map snapshot (e.g. a hand-made trace), every page counts as mapped for the whole
    life of the process; the caller reports that assumption.
    """
    vpns = np.asarray(vpns, dtype=np.uint64)
    if not pmaps.has_maps:
        return np.full(vpns.shape, pmaps.n_samples, dtype=np.int64)
    los, his, weights = [], [], []
    for span in pmaps.spans:
        lo, hi = _page_bounds(span.maps, page_size)
        los.append(lo)
        his.append(hi)
        weights.append(np.full(lo.shape, span.stop - span.first, dtype=np.int64))
    lo, hi, w = np.concatenate(los), np.concatenate(his), np.concatenate(weights)
    bounds = np.concatenate((lo, hi))
    steps = np.concatenate((w, -w))
    order = np.argsort(bounds, kind="stable")
    bounds, level = bounds[order], np.cumsum(steps[order])
    idx = np.searchsorted(bounds, vpns, side="right") - 1
    out = np.zeros(vpns.shape, dtype=np.int64)
    inside = idx >= 0
    out[inside] = level[idx[inside]]
    return out


def writable_pages_per_sample(pmaps: ProcessMaps, n_samples: int, page_size: int) -> np.ndarray:
    """Pages in writable regions of this process at each sample (0 outside its life).

    This is the memory that could have been dirtied, the denominator of "fraction of memory dirty".
    """
    steps = np.zeros(n_samples + 1, dtype=np.int64)
    for span in pmaps.spans:
        lo, hi = _page_bounds(span.maps, page_size)
        pages = int(np.sum((hi - lo)[span.maps.writable()], dtype=np.uint64))
        steps[span.first] += pages
        steps[span.stop] -= pages
    return np.cumsum(steps[:-1])
