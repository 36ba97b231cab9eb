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
from calm.analyzer.regions import Region, region_name, region_phrase
from calm.trace.reader import ProcessInfo, TraceInfo


@dataclass
class PageTable:
    """One row per distinct dirtied page of the service, sorted by (space, page).

    A page is named in the service page space (`calm.trace.service`): `process` is its space, the
    trace row of the process for a private page, or `Analysis.n_spaces + k` for a page of shared
    object k; `vpn` is the virtual page number of a private page, the page offset in the object of
    a shared one. A shared page is one row however many processes map it."""

    process: np.ndarray  # uint32 space: trace row (private) or n_spaces + object (shared)
    vpn: np.ndarray  # uint64 page number in that space
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
    writable_pages: np.ndarray  # int64 pages in writable mapped regions at each sample (each once)
    top_dirty: dict[int, np.ndarray]  # N -> how many of the top-N pages were dirty in each sample
    resident_pages: np.ndarray | None = None  # int64 sum of Pss (each resident page once); 1.0: None

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
    processes: set[int] = field(default_factory=set)  # rows seen writing its pages
    mapped_by: set[int] = field(default_factory=set)  # rows that map it
    writers_known: bool = True  # False: a hash trace's shared object (who wrote is unknown)
    pages: int = 0
    dirty_page_samples: int = 0
    max_p: float = 0.0
    bss_of: str = ""  # the ELF file whose .bss tail this anonymous memory is

    @property
    def name(self) -> str:
        """Short name for figures ('[heap]', '.bss of libz.so', 'libc.so.6 (file)')."""
        return region_name(self.kind, self.label, self.bss_of)

    @property
    def phrase(self) -> str:
        """Noun phrase for sentences ('the heap', 'anonymous memory')."""
        return region_phrase(self.kind, self.label, self.bss_of)


@dataclass
class ObserverStats:
    """What recording cost: the sampling period achieved and calm's work per round."""

    interval: float  # requested, seconds
    period_mean: float  # achieved time between reads, seconds
    period_p95: float
    read_mean: float  # wall seconds reading the processes per round
    read_p95: float
    cpu_mean: float  # calm's CPU seconds per round
    cpu_p95: float
    pages_read_mean: float  # pages (contents or page-table entries) read per round
    pages_read_max: int
    cpu_share: float  # calm's CPU seconds per second of recording (1.0 = a whole core)
    late_rounds: int  # rounds that began more than 10% after the interval
    nice: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Analysis:
    """Everything `calm analyze` computes from one trace."""

    trace_path: str
    info: TraceInfo
    processes: list[ProcessInfo]  # the analysed processes
    n_samples: int
    duration: float  # the recording's span (FORMAT.md), seconds
    baseline_read: float  # seconds before the first sample (Trace.baseline_read)
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
    n_spaces: int = 1 << 16  # trace processes; PageTable.process >= this is a shared object
    shared_objects: list = field(default_factory=list)  # calm.trace.service.SharedObject
    shared_written: dict[int, int] | None = None  # row -> shared pages it wrote; None: unknown (hash)
    observer: ObserverStats | None = None

    def is_shared(self, space: np.ndarray) -> np.ndarray:
        return np.asarray(space) >= self.n_spaces

    def shared_object(self, space: int):
        return self.shared_objects[int(space) - self.n_spaces]

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
