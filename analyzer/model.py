"""The result of analysing a trace: plain arrays and small records, no plotting.

Why a separate module: replay, the HTML report and notebooks consume these objects; plots and
files are views of them (`analyzer.plots`, `analyzer.outputs`).

Probability conventions (stated in summary.json too):
- `p` is per sample: dirty samples / mapped samples of that page.
- `p_per_second` = 1 - (1 - p) ** (1 / interval), with `interval` the mean measured time between
  reads (`Trace.sample_periods`):
  the chance the page is dirtied at least once in a second if intervals are independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from calm.analyzer.elf_attr import SectionStat, SymbolStat
from calm.analyzer.regions import Region
from calm.trace.reader import ProcessInfo, TraceInfo


@dataclass
class PageTable:
    """One row per distinct dirtied page (process, vpn), sorted by (process, vpn)."""

    process: np.ndarray  # uint32 row in the trace
    vpn: np.ndarray  # uint64
    dirty: np.ndarray  # int64 samples in which the page was dirty
    mapped: np.ndarray  # int64 samples in which the page was mapped
    region: np.ndarray  # int64 index into Analysis.regions, -1 if in no recorded region

    @property
    def p(self) -> np.ndarray:
        return self.dirty / np.maximum(self.mapped, 1)

    def __len__(self) -> int:
        return int(self.vpn.size)

    def take(self, idx: np.ndarray) -> "PageTable":
        return PageTable(self.process[idx], self.vpn[idx], self.dirty[idx], self.mapped[idx],
                         self.region[idx])

    def ranked(self) -> np.ndarray:
        """Row order by descending p, then descending dirty count, then (process, vpn)."""
        return np.lexsort((self.vpn, self.process, -self.dirty, -self.p))


@dataclass
class Timeline:
    """Per-sample series for the selected processes."""

    t: np.ndarray  # end of each sample, seconds since the first sample started
    length: np.ndarray  # seconds each sample stands for (time between reads, see sample_periods)
    dirty_pages: np.ndarray  # int64 dirty pages in each sample (all selected processes)
    dirty_by_process: dict[int, np.ndarray]  # row -> dirty pages per sample
    writable_pages: np.ndarray  # int64 pages in writable mapped regions at each sample
    top_dirty: dict[int, np.ndarray]  # N -> how many of the top-N pages were dirty in each sample

    def dirty_rate_mb_s(self, page_size: int) -> np.ndarray:
        """Dirtied bytes per second of each sample, in MB/s (10**6 bytes)."""
        return self.dirty_pages * page_size / np.maximum(self.length, 1e-12) / 1e6


@dataclass
class WorkingSet:
    """Distinct pages dirtied in consecutive windows of `window` seconds."""

    window: float
    start: np.ndarray  # window start, seconds
    distinct_pages: np.ndarray  # int64
    complete: np.ndarray  # bool: the trace covers the whole window


@dataclass
class AddressRange:
    """A run of mapped address space shown in the heatmap (gaps between runs are skipped)."""

    process: int
    start: int  # byte address
    end: int
    first_page: int  # position of its first page in the compacted address axis


@dataclass
class Heatmap:
    """Dirty events on an (address bins x time bins) grid over compacted address space."""

    counts: np.ndarray  # int64 [rows, bins]
    pages_per_row: np.ndarray  # float64 pages of compacted address space per row
    samples_per_bin: np.ndarray  # int64
    time_edges: np.ndarray  # seconds, bins + 1
    ranges: list[AddressRange]
    total_pages: int

    def fraction(self) -> np.ndarray:
        """Fraction of the row's pages dirty per sample, averaged over the time bin."""
        denom = self.pages_per_row[:, None] * np.maximum(self.samples_per_bin, 1)[None, :]
        return self.counts / np.maximum(denom, 1e-12)


@dataclass
class TopRaster:
    """How often each of the top pages was dirty in each time bin (the hot set over time)."""

    counts: np.ndarray  # int64 [n_top, bins], rank order
    samples_per_bin: np.ndarray
    time_edges: np.ndarray

    def fraction(self) -> np.ndarray:
        return self.counts / np.maximum(self.samples_per_bin, 1)[None, :]


@dataclass
class RegionStat:
    """Dirtying of one kind of memory (heap, stack, anonymous, or one file path)."""

    kind: str
    label: str
    processes: set[int] = field(default_factory=set)
    pages: int = 0
    dirty_page_samples: int = 0
    max_p: float = 0.0


@dataclass
class Analysis:
    """Everything `calm analyze` computes from one trace."""

    trace_path: str
    info: TraceInfo
    processes: list[ProcessInfo]  # the analysed processes
    n_samples: int
    duration: float
    interval: float  # mean measured time between reads, seconds
    page_size: int
    pages: PageTable
    regions: list[Region]
    region_stats: list[RegionStat]
    sections: list[SectionStat]
    symbols: list[SymbolStat]
    elf_skipped: dict[str, str]  # path -> why it was not attributed
    timeline: Timeline
    working_sets: list[WorkingSet]
    heatmap: Heatmap
    top_raster: TopRaster
    notes: list[str]

    def p_per_second(self, p: np.ndarray | None = None) -> np.ndarray:
        p = self.pages.p if p is None else p
        return 1.0 - np.power(1.0 - p, 1.0 / self.interval)

    @cached_property
    def _rank_order(self) -> np.ndarray:
        """Ranked row order, sorted once: summaries ask for many rankings (per process)."""
        return self.pages.ranked()

    def ranking(self, n: int | None = None, process: int | None = None) -> PageTable:
        """The top-n pages by p, of one process row or (None) of the whole service."""
        order = self._rank_order
        if process is not None:
            order = order[self.pages.process[order] == process]
        return self.pages.take(order[:n] if n is not None else order)

    def count_above(self, thresholds: tuple[float, ...], process: int | None = None) -> dict[float, int]:
        p = self.pages.p if process is None else self.pages.p[self.pages.process == process]
        return {t: int(np.count_nonzero(p > t)) for t in thresholds}
