"""The service page space: one name per page of memory, however many processes map it.

A trace names dirty pages by (process row, virtual page number). That is the right name for a
private page: after a write each process holds its own copy. A MAP_SHARED page (of a file, memfd,
SysV segment, /dev/shm file or shared anonymous mapping) is one page of memory that several
processes map, each at its own address; counting it once per process made a PostgreSQL service
4.7x larger than it is. Its service name is (object, page offset in the object), the object being
the region's (device, inode) from /proc/PID/maps. A 1.0 trace has no device: (inode, path) stands
in (two files can share an inode number only on different devices, where their paths differ).

Keys are uint64 `(space << 48) | page`, packed like `calm.trace.keys`: spaces 0..P-1 are the
processes (private pages, page = vpn) and spaces P..P+O-1 the shared objects (page = offset in
pages). The analyzer and the replay both count pages by these keys, so no page is counted twice.

Mapping a chunk of events is vectorised: per process and per *shared layout* (its shared regions,
which change far less often than its map), one `searchsorted` over that process's events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from calm.core.errors import CalmError
from calm.trace.keys import MAX_ROWS, key_process, make_keys
from calm.trace.maps import SKIPPED_PATHS, MapsTable
from calm.trace.reader import Trace, TraceChunk

_SYSV = re.compile(r"^/SYSV([0-9a-fA-F]{8})( \(deleted\))?$")


@dataclass
class SharedObject:
    """A file, memfd, SysV segment or shared anonymous mapping that processes map MAP_SHARED."""

    index: int  # position in ServiceSpace.objects
    dev: int
    inode: int
    path: str
    mapped_by: set[int] = field(default_factory=set)  # process rows that map it at some sample
    writable_by: set[int] = field(default_factory=set)  # those that map it writable

    @property
    def label(self) -> str:
        """A name for tables: what the object is, as /proc/PID/maps shows it."""
        path = self.path.removesuffix(" (deleted)")
        if path in ("/dev/zero", "") or path.startswith("[anon_shmem"):
            name = path[len("[anon_shmem:"):-1] if path.startswith("[anon_shmem:") else ""
            return f"shared anonymous memory{' ' + name if name else ''} (inode {self.inode})"
        sysv = _SYSV.match(self.path)
        if sysv:
            return f"SysV shared memory key 0x{sysv[1]} (inode {self.inode})"
        if path.startswith("/memfd:"):
            return f"memfd {path[len('/memfd:'):]} (inode {self.inode})"
        return f"{self.path} (shared)"


@dataclass
class _Layout:
    """The shared regions of one process from sample `first` until `stop` (exclusive)."""

    first: int
    stop: int
    start_vpn: np.ndarray  # uint64, sorted
    end_vpn: np.ndarray  # uint64
    obj: np.ndarray  # int64, index into ServiceSpace.objects
    first_page: np.ndarray  # uint64, object page of each region's first page
    writable: np.ndarray  # bool: mapped writable


class ServiceSpace:
    """Maps a trace's (process, vpn) events to service page keys (see module docstring)."""

    def __init__(self, trace: Trace) -> None:
        self.page_size = trace.page_size
        self.n_processes = len(trace.processes)
        self.writer_known = trace.info.writer_known
        self.objects: list[SharedObject] = []
        self._index: dict[tuple, int] = {}
        self._layouts: dict[int, list[_Layout]] = {}
        has_dev = trace.info.format_minor >= 1
        for proc in trace.processes:
            if proc.first_sample < 0:
                continue
            layouts = self._process_layouts(trace, proc.row, proc.first_sample, proc.last_sample + 1, has_dev)
            if layouts:
                self._layouts[proc.row] = layouts
        if self.n_processes + len(self.objects) > MAX_ROWS:
            raise CalmError(f"{trace.path} has {self.n_processes} processes and {len(self.objects)} "
                            f"shared objects; calm supports at most {MAX_ROWS} together")

    # -- building ------------------------------------------------------------------------------
    def _process_layouts(self, trace: Trace, row: int, first: int, stop: int,
                         has_dev: bool) -> list[_Layout]:
        snapshots = trace.map_snapshots(row)
        out: list[_Layout] = []
        shift = np.uint64(self.page_size.bit_length() - 1)
        for i, (sample, maps) in enumerate(snapshots):
            a = first if i == 0 else max(sample, first)
            b = min(snapshots[i + 1][0], stop) if i + 1 < len(snapshots) else stop
            if b <= a:
                continue
            keep = maps.shared() & np.array([p not in SKIPPED_PATHS for p in maps.path], dtype=bool)
            idx = np.flatnonzero(keep)
            objs = np.array([self._object(maps, int(i), has_dev, row) for i in idx], dtype=np.int64)
            order = np.argsort(maps.start[idx], kind="stable")
            idx, objs = idx[order], objs[order]
            layout = _Layout(a, b, maps.start[idx] >> shift, maps.end[idx] >> shift, objs,
                             maps.offset[idx] >> shift, maps.writable()[idx])
            previous = out[-1] if out else None
            if (previous is not None and previous.stop == a and np.array_equal(previous.start_vpn, layout.start_vpn)
                    and np.array_equal(previous.end_vpn, layout.end_vpn) and np.array_equal(previous.obj, layout.obj)
                    and np.array_equal(previous.first_page, layout.first_page)
                    and np.array_equal(previous.writable, layout.writable)):
                previous.stop = b  # the map changed elsewhere (heap, stack): same shared layout
            elif idx.size:
                out.append(layout)
        return out

    def _object(self, maps: MapsTable, i: int, has_dev: bool, row: int) -> int:
        inode, path = int(maps.inode[i]), maps.path[i]
        key = (int(maps.dev[i]), inode) if has_dev and inode else (inode, path)
        found = self._index.get(key)
        if found is None:
            found = len(self.objects)
            self._index[key] = found
            self.objects.append(SharedObject(found, int(maps.dev[i]), inode, path))
        obj = self.objects[found]
        obj.mapped_by.add(row)
        if maps.perms[i][1] == "w":
            obj.writable_by.add(row)
        return found

    # -- queries -------------------------------------------------------------------------------
    @property
    def has_shared(self) -> bool:
        return bool(self.objects)

    def object_space(self, obj: int | np.ndarray):
        return self.n_processes + obj

    def is_shared(self, keys: np.ndarray) -> np.ndarray:
        return key_process(keys) >= self.n_processes

    def map_events(self, sample: np.ndarray, process: np.ndarray, vpn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(service keys, shared mask) of events given as (sample, process row, vpn) arrays."""
        keys = make_keys(process, vpn)
        shared = np.zeros(keys.size, dtype=bool)
        if not self._layouts or keys.size == 0:
            return keys, shared
        order = np.argsort(process, kind="stable")  # by process, samples ascending within one
        by_process = process[order]
        for row in np.unique(by_process).tolist():
            layouts = self._layouts.get(row)
            if not layouts:
                continue
            lo, hi = np.searchsorted(by_process, [row, row + 1])
            idx = order[lo:hi]
            row_sample = sample[idx]
            for layout in layouts:
                a, b = np.searchsorted(row_sample, [layout.first, layout.stop])
                if a == b:
                    continue
                sel = idx[a:b]
                v = vpn[sel].astype(np.uint64)
                pos = np.searchsorted(layout.start_vpn, v, side="right") - 1
                inside = pos >= 0
                inside[inside] = v[inside] < layout.end_vpn[pos[inside]]
                if not inside.any():
                    continue
                p = pos[inside]
                page = layout.first_page[p] + (v[inside] - layout.start_vpn[p])
                keys[sel[inside]] = make_keys(self.object_space(layout.obj[p]).astype(np.uint64), page)
                shared[sel[inside]] = True
        return keys, shared

    def map_runs(self, sample: np.ndarray, process: np.ndarray, start_vpn: np.ndarray,
                 pages: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs of pages given as (sample, process row, first vpn, length) in service keys:
        (first key, length, index of the run it came from). A run is cut where a shared region
        begins or ends, so each piece is wholly private or wholly one object's; the pieces of a
        shared object may repeat or overlap across processes (the caller takes their union).
        Cost grows with runs and region boundaries, not with pages."""
        start = np.asarray(start_vpn, dtype=np.uint64)
        stop = start + np.asarray(pages, dtype=np.uint64)
        if start.size == 0:
            return np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64)
        cuts_by_row = {row: np.unique(np.concatenate([np.concatenate((l.start_vpn, l.end_vpn)) for l in layouts]))
                       for row, layouts in self._layouts.items()}
        piece_start, piece_stop, source = [start], [stop], [np.arange(start.size)]
        if cuts_by_row:
            piece_start, piece_stop, source = [], [], []
            for row in np.unique(process).tolist():
                idx = np.flatnonzero(process == row)
                cuts = cuts_by_row.get(row, np.empty(0, np.uint64))
                a, b = start[idx], stop[idx]
                lo = np.searchsorted(cuts, a, side="right")  # first cut strictly inside
                hi = np.searchsorted(cuts, b, side="left")  # cuts before the run's end
                n = np.maximum(hi - lo, 0) + 1  # pieces per run
                run = np.repeat(np.arange(idx.size), n)
                k = np.arange(run.size) - np.repeat(np.cumsum(n) - n, n)  # piece number within its run
                inner = cuts[np.minimum(lo[run] + k - 1, max(cuts.size - 1, 0))] if cuts.size else a[run]
                s0 = np.where(k == 0, a[run], inner)
                last = k == n[run] - 1
                nxt = cuts[np.minimum(lo[run] + k, max(cuts.size - 1, 0))] if cuts.size else b[run]
                s1 = np.where(last, b[run], nxt)
                piece_start.append(s0)
                piece_stop.append(s1)
                source.append(idx[run])
        s0, s1, src = (np.concatenate(x) for x in (piece_start, piece_stop, source))
        keys, _ = self.map_events(np.asarray(sample)[src], np.asarray(process)[src], s0)
        return keys, (s1 - s0).astype(np.int64), src

    def map_chunk(self, chunk: TraceChunk) -> tuple[np.ndarray, np.ndarray]:
        return self.map_events(chunk.event_sample, chunk.event_process, chunk.vpn)

    def _rectangles(self, obj: int, rows=None, writable_only: bool = False):
        """(sample start, sample stop, first page, page stop) of every mapping of object `obj`
        (by processes in `rows`, all if None)."""
        s0, s1, p0, p1 = [], [], [], []
        for row, layouts in self._layouts.items():
            if rows is not None and row not in rows:
                continue
            for layout in layouts:
                mine = np.flatnonzero((layout.obj == obj) & (layout.writable | (not writable_only)))
                if mine.size:
                    s0.append(np.full(mine.size, layout.first))
                    s1.append(np.full(mine.size, layout.stop))
                    p0.append(layout.first_page[mine].astype(np.int64))
                    p1.append((layout.first_page[mine] + layout.end_vpn[mine] - layout.start_vpn[mine]).astype(np.int64))
        if not s0:
            return None
        return tuple(np.concatenate(x) for x in (s0, s1, p0, p1))

    def object_extent(self, obj: int) -> tuple[int, int]:
        """[first page, page stop) of the part of object `obj` any process maps."""
        rect = self._rectangles(obj)
        return (0, 0) if rect is None else (int(rect[2].min()), int(rect[3].max()))

    def mapped_by(self, obj: int) -> set[int]:
        return self.objects[obj].mapped_by

    def pages_per_sample(self, n_samples: int, rows=None, writable_only: bool = True) -> np.ndarray:
        """Pages of all shared objects mapped (writable) by some process of `rows` at each sample,
        each page once: the shared part of the service's writable memory."""
        out = np.zeros(n_samples, dtype=np.int64)
        for obj in range(len(self.objects)):  # one iteration per object, then per mapping change
            rect = self._rectangles(obj, rows, writable_only)
            if rect is None:
                continue
            s0, s1, p0, p1 = rect
            cuts = np.unique(np.clip(np.concatenate((s0, s1)), 0, n_samples))
            for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
                live = (s0 <= a) & (s1 >= b)
                out[a:b] += union_length(p0[live], p1[live])
        return out

    def object_mapped_counts(self, obj: int, pages: np.ndarray) -> np.ndarray:
        """Samples in which each page of object `obj` was mapped by at least one process (the
        denominator of a shared page's dirtying probability)."""
        pages = np.asarray(pages, dtype=np.int64)
        rect = self._rectangles(obj)
        if rect is None:
            return np.zeros(pages.shape, dtype=np.int64)
        s0, s1, p0, p1 = rect
        bounds = np.unique(np.concatenate((p0, p1)))
        counts = np.zeros(bounds.size, dtype=np.int64)  # for the page interval [bounds[k], bounds[k+1])
        for k in range(bounds.size - 1):  # one iteration per distinct region boundary of the object
            cover = (p0 <= bounds[k]) & (p1 >= bounds[k + 1])
            counts[k] = union_length(s0[cover], s1[cover])
        where = np.searchsorted(bounds, pages, side="right") - 1
        ok = (where >= 0) & (where < bounds.size - 1)
        out = np.zeros(pages.shape, dtype=np.int64)
        out[ok] = counts[where[ok]]
        return out


def union_length(starts: np.ndarray, stops: np.ndarray) -> int:
    """Length of the union of half-open integer intervals [starts_i, stops_i)."""
    if starts.size == 0:
        return 0
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], stops[order]
    reach = np.maximum.accumulate(e)
    previous = np.concatenate(([s[0]], reach[:-1]))
    return int(np.sum(np.maximum(reach - np.maximum(s, previous), 0)))


def distinct_per_sample(sample: np.ndarray, keys: np.ndarray,
                        shared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sample, key) events with each key at most once per sample.

    Only shared keys can repeat within a sample (two processes wrote one shared page; soft-dirty
    sees both), so only they are sorted; private events pass through unchanged.
    """
    if not shared.any():
        return sample, keys
    sh = np.flatnonzero(shared)
    s, k = sample[sh], keys[sh]
    order = np.lexsort((k, s))
    s, k = s[order], k[order]
    first = np.ones(s.size, dtype=bool)
    first[1:] = (s[1:] != s[:-1]) | (k[1:] != k[:-1])
    private = np.flatnonzero(~shared)
    return np.concatenate((sample[private], s[first])), np.concatenate((keys[private], k[first]))
