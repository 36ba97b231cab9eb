"""`analyze(trace)`: two streaming passes over a trace, then per-page and per-region results.

Why two passes: the first counts, per distinct page, the samples in which it was dirty (and the
working sets); only then are the top pages and the dirtied address ranges known, which the second
pass needs to bin events into the top-page raster and the address x time heatmap. Each pass holds
one chunk of events plus state of O(distinct pages); nothing is pages x samples.

Pages are counted in the *service page space* (`calm.trace.service`): a page of a MAP_SHARED object
is one page however many processes map or write it, so every figure (dirtied pages, rate, working
sets, probabilities) counts it once. Per-process figures keep each process's own writes; a hash
trace cannot say who wrote a shared page, so there they hold private pages only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from calm.analyzer import attribution
from calm.analyzer.counting import DirtyCounter, GridCounter, WindowCounter, even_bins, lookup_sorted
from calm.analyzer.service_view import ServiceEvents, observer_stats, shared_regions
from calm.trace.keys import key_process, key_vpn, make_keys
from calm.analyzer.mapped import ProcessMaps, load_process_maps, mapped_counts, writable_pages_per_sample
from calm.analyzer.model import (AddressRange, Analysis, Heatmap, PageTable, Timeline, TopRaster,
                            WorkingSet)
from calm.analyzer.names import NamedRange, apply_region_names
from calm.analyzer.regions import Region, assign_regions
from calm.core.errors import CalmError
from calm.collector.ranges import merge_ranges
from calm.trace.reader import Trace
from calm.trace.service import ServiceSpace

TOP_SIZES = (100, 500)
WINDOWS_S = (1.0, 10.0, 60.0)
HEATMAP_ROWS = 256
TIME_BINS = 300
CHUNK_EVENTS = 1 << 20  # ~64 MiB of transient arrays per chunk

Progress = Callable[[str, int, int], None]  # (stage, samples done, samples total)


def analyze(trace_path: str | os.PathLike, *, pids: Sequence[int] | None = None,
            max_events: int = CHUNK_EVENTS, progress: Progress | None = None,
            region_names: Sequence[NamedRange] = ()) -> Analysis:
    """Analyses a trace; `pids` restricts it to those processes (default: the whole service);
    `region_names` names address ranges the maps show as anonymous (calm.analyzer.names).

    HDF5 reports damaged files as OSError from whichever read first touches the damage (even
    while opening), so those become one CalmError line here.
    """
    try:
        return _analyze(trace_path, pids, max_events, progress, list(region_names))
    except OSError as exc:
        raise CalmError(f"{trace_path} is corrupt or truncated: {exc}") from exc


def _analyze(trace_path: str | os.PathLike, pids: Sequence[int] | None, max_events: int,
             progress: Progress | None, region_names: list[NamedRange]) -> Analysis:
    with Trace(trace_path) as trace:
        if trace.n_samples == 0:
            raise CalmError(f"{trace_path} holds no complete sample to analyse")
        rows = _select_rows(trace, pids)
        notes: list[str] = []
        if trace.info.status == "recording":
            notes.append("the trace was not closed (recording still running, or the recorder was "
                         "killed); analysed what had been flushed")
        if trace.eoa_repaired:
            notes.append("the recorder died in the middle of a flush: read with the file's end "
                         "address raised to its size, as `h5clear --increment` would (file unchanged)")
        if trace.trimmed:
            notes.append("the file was cut short; analysed the samples before the cut")
        notes.extend(trace.info.notes)
        page_size = trace.page_size
        space = ServiceSpace(trace)
        events = ServiceEvents(trace, space, rows)
        if events.drop_shared:
            notes.append("the hash backend cannot tell which process wrote a shared page, so this "
                         "per-process view leaves shared pages out (analyse the whole service to "
                         "see them, each once)")
        pmaps = {row: load_process_maps(trace, row) for row in rows}
        if trace.damaged_strings:
            notes.append("some names or memory-map rows lie in a damaged part of the file (a "
                         "recorder killed or out of space mid-flush): read the rows before it")
        no_maps = [trace.processes[r].pid for r in rows if not pmaps[r].has_maps]
        if no_maps:
            notes.append(f"no memory map recorded for pid(s) {no_maps}: pages count as mapped for "
                         "the whole life of their process")
        t0 = float(trace.t_start[0])
        t = trace.t_end - t0
        length = trace.sample_periods()
        interval = float(np.mean(length))

        counter, windows = _first_pass(trace, events, max_events, t, interval, progress, notes)
        pages = _page_table(counter, pmaps, space, page_size, notes)
        regions: list[Region] = []
        pages.region = _regions_of_pages(pages, pmaps, space, page_size, regions)
        if region_names:
            rows_of_pid: dict[int, list[int]] = {}
            for r in rows:
                rows_of_pid.setdefault(trace.processes[r].pid, []).append(r)
            notes += apply_region_names(pages, regions, region_names, rows_of_pid, page_size)
        layout, total_pages = _address_layout(pages, regions, page_size)
        heatmap, raster, top_dirty = _second_pass(trace, events, pages, layout, total_pages, t,
                                                 max_events, progress)
        timeline = _timeline(trace, events, pmaps, t, length, top_dirty, page_size)
        attr = attribution.attribute(pages, regions, pmaps, page_size, space, events.writers)
        return Analysis(
            trace_path=str(trace_path), info=trace.info,
            processes=[trace.processes[r] for r in rows], n_samples=trace.n_samples,
            duration=trace.duration, baseline_read=trace.baseline_read, interval=interval,
            page_size=page_size, pages=pages,
            regions=regions, region_stats=attr.regions, sections=attr.sections,
            symbols=attr.symbols, elf_skipped=attr.skipped, timeline=timeline,
            working_sets=windows, heatmap=heatmap, top_raster=raster, notes=notes,
            n_spaces=space.n_processes, shared_objects=space.objects,
            shared_written=events.shared_written if space.writer_known else None,
            observer=observer_stats(trace),
        )


def _select_rows(trace: Trace, pids: Sequence[int] | None) -> list[int]:
    sampled = [p.row for p in trace.processes if p.first_sample >= 0]
    if not pids:
        if not sampled:
            raise CalmError(f"{trace.path} holds no sampled process")
        return sampled
    rows = []
    for pid in pids:
        match = [p.row for p in trace.processes if p.pid == pid and p.first_sample >= 0]
        if not match:
            known = ", ".join(str(trace.processes[r].pid) for r in sampled)
            raise CalmError(f"pid {pid} is not in {trace.path} (its processes: {known})")
        rows.extend(match)
    return sorted(set(rows))


def _window_counters(t: np.ndarray, interval: float,
                     notes: list[str]) -> list[tuple[float, WindowCounter]]:
    out = []
    for w in WINDOWS_S:
        if w < interval * 0.999:
            notes.append(f"no {w:g} s working set: the sampling interval ({interval:.3g} s) is longer")
            continue
        # a sample belongs to the window in which it ended; the epsilon keeps t = k*w in window k-1
        window = np.floor(np.maximum(t - 1e-9, 0) / w).astype(np.int64)
        out.append((w, WindowCounter(window, int(window[-1]) + 1)))
    return out


def _first_pass(trace: Trace, events: ServiceEvents, max_events: int, t: np.ndarray, interval: float,
                progress: Progress | None, notes: list[str]) -> tuple[DirtyCounter, list[WorkingSet]]:
    counter = DirtyCounter()
    windows = _window_counters(t, interval, notes)
    for chunk in trace.iter_chunks(max_events):
        sample, keys = events.of(chunk, first_pass=True)
        counter.add(keys)
        index = counter.index_of(keys) if windows else None
        for _w, wc in windows:
            wc.add(sample, index, counter)
        if progress:
            progress("counting", chunk.stop_sample, trace.n_samples)
    duration = float(t[-1])
    out = []
    for w, wc in windows:
        n = wc.distinct.size
        start = np.arange(n) * w
        out.append(WorkingSet(w, start, wc.finish(), start + w <= duration + 0.5 * interval))
    return counter, out


def _page_table(counter: DirtyCounter, pmaps: dict[int, ProcessMaps], space: ServiceSpace,
                page_size: int, notes: list[str]) -> PageTable:
    keys = counter.keys
    process, vpn = key_process(keys), key_vpn(keys)
    mapped = np.zeros(keys.size, dtype=np.int64)
    for row, pm in pmaps.items():
        lo, hi = np.searchsorted(process, [row, row + 1])
        mapped[lo:hi] = mapped_counts(pm, vpn[lo:hi], page_size)
    for obj in range(len(space.objects)):  # shared pages: mapped while any process maps them
        lo, hi = np.searchsorted(process, [space.object_space(obj), space.object_space(obj) + 1])
        if hi > lo:
            mapped[lo:hi] = space.object_mapped_counts(obj, vpn[lo:hi])
    short = counter.counts > mapped
    if short.any():
        notes.append(f"{int(short.sum())} dirtied page(s) lay outside the recorded maps for some "
                     "of their dirty samples; their mapped count was raised to their dirty count")
        mapped = np.maximum(mapped, counter.counts)
    return PageTable(process, vpn, counter.counts, mapped, np.full(keys.size, -1, dtype=np.int64))


def _regions_of_pages(pages: PageTable, pmaps: dict[int, ProcessMaps], space: ServiceSpace,
                      page_size: int, regions: list[Region]) -> np.ndarray:
    out = np.full(len(pages), -1, dtype=np.int64)
    index: dict[tuple, int] = {}
    for row, pm in pmaps.items():
        lo, hi = np.searchsorted(pages.process, [row, row + 1])
        out[lo:hi] = assign_regions(pm, pages.vpn[lo:hi], page_size, regions, index)
    shared_regions(pages, space, page_size, regions, out)
    return out


def _address_layout(pages: PageTable, regions: list[Region],
                    page_size: int) -> tuple[list[AddressRange], int]:
    """Compacted address axis: per process, the mapped regions that hold dirtied pages, gaps cut."""
    layout: list[AddressRange] = []
    position = 0
    for row in np.unique(pages.process).tolist():
        lo_i, hi_i = np.searchsorted(pages.process, [row, row + 1])
        vpn = pages.vpn[lo_i:hi_i].astype(np.int64)
        used = np.unique(pages.region[lo_i:hi_i])
        used = used[used >= 0]
        lo = [np.array([regions[i].start // page_size for i in used.tolist()], dtype=np.int64)]
        hi = [np.array([-(-regions[i].end // page_size) for i in used.tolist()], dtype=np.int64)]
        loose = vpn[pages.region[lo_i:hi_i] < 0]  # dirtied outside any recorded region
        lo.append(loose)
        hi.append(loose + 1)
        run_lo, run_hi = merge_ranges(np.concatenate(lo), np.concatenate(hi))
        for a, b in zip(run_lo.tolist(), run_hi.tolist()):
            layout.append(AddressRange(row, a * page_size, b * page_size, position))
            position += b - a
    return layout, position


def _rows_of_keys(keys: np.ndarray, layout: list[AddressRange], total_pages: int, n_rows: int,
                  page_size: int) -> np.ndarray:
    """Heatmap row of each key (its compacted address position scaled to n_rows)."""
    if not layout:
        return np.full(keys.shape, -1, dtype=np.int64)
    starts = make_keys(np.array([r.process for r in layout]),
                       np.array([r.start // page_size for r in layout], dtype=np.uint64))
    first = np.array([r.first_page for r in layout], dtype=np.int64)
    idx = np.searchsorted(starts, keys, side="right") - 1
    pos = first[idx] + (keys - starts[idx]).astype(np.int64)
    return pos * n_rows // max(total_pages, 1)


def _second_pass(trace: Trace, events: ServiceEvents, pages: PageTable, layout: list[AddressRange],
                 total_pages: int, t: np.ndarray, max_events: int,
                 progress: Progress | None) -> tuple[Heatmap, TopRaster, dict[int, np.ndarray]]:
    n_s = trace.n_samples
    n_bins = min(TIME_BINS, n_s)
    time_bin = even_bins(n_s, n_bins)
    n_rows = max(1, min(HEATMAP_ROWS, total_pages))
    heat = GridCounter(n_rows, time_bin, n_bins)
    order = pages.ranked()[: max(TOP_SIZES)]
    top_keys = make_keys(pages.process[order], pages.vpn[order])
    sort = np.argsort(top_keys)
    top_sorted, top_rank = top_keys[sort], sort  # rank of top_sorted[i] is sort[i]
    n_raster = min(TOP_SIZES[0], top_keys.size)
    raster = GridCounter(max(n_raster, 1), time_bin, n_bins)
    top_dirty = {n: np.zeros(n_s, dtype=np.int64) for n in TOP_SIZES}
    for chunk in trace.iter_chunks(max_events):
        sample, keys = events.of(chunk)
        heat.add(sample, _rows_of_keys(keys, layout, total_pages, n_rows, trace.page_size))
        hit = lookup_sorted(top_sorted, keys)
        rank = np.where(hit >= 0, top_rank[np.maximum(hit, 0)], -1)
        for n in TOP_SIZES:
            sel = (rank >= 0) & (rank < n)
            top_dirty[n] += np.bincount(sample[sel], minlength=n_s)
        raster.add(sample, np.where(rank < n_raster, rank, -1))
        if progress:
            progress("binning", chunk.stop_sample, n_s)
    samples_per_bin = np.bincount(time_bin, minlength=n_bins)
    edges_idx = np.concatenate(([0], np.cumsum(samples_per_bin)))
    t_start = np.concatenate(([0.0], t))
    time_edges = t_start[edges_idx]
    pages_per_row = np.diff((np.arange(n_rows + 1) * total_pages) / n_rows)
    heatmap = Heatmap(heat.grid, pages_per_row, samples_per_bin, time_edges, layout, total_pages)
    top = TopRaster(raster.grid[:n_raster], samples_per_bin, time_edges)
    return heatmap, top, top_dirty


def _timeline(trace: Trace, events: ServiceEvents, pmaps: dict[int, ProcessMaps], t: np.ndarray,
              length: np.ndarray, top_dirty: dict[int, np.ndarray], page_size: int) -> Timeline:
    """Per-sample series: dirty pages of the service (each page once), of each process (its own
    writes; without a hash trace's shared pages), writable and resident memory (each page once)."""
    n_s = trace.n_samples
    own = trace.segment_n_dirty.astype(np.int64) - events.unattributed_per_segment
    by_process = {}
    for row in events.rows:
        sel = trace.segment_process == row
        by_process[row] = np.bincount(trace.segment_sample[sel], weights=own[sel],
                                      minlength=n_s).astype(np.int64)
    writable = events.space.pages_per_sample(n_s, set(events.rows))
    for row in events.rows:
        writable += writable_pages_per_sample(pmaps[row], n_s, page_size, private_only=True)
    resident = None
    if trace.segment_pss is not None:
        sel = np.isin(trace.segment_process, np.asarray(events.rows, dtype=np.uint32))
        resident = np.bincount(trace.segment_sample[sel], weights=trace.segment_pss[sel].astype(np.float64),
                               minlength=n_s).astype(np.int64)
    return Timeline(t, length, events.dirty_per_sample, by_process, writable, top_dirty, resident)
