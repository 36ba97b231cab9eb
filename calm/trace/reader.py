"""Streaming reader of calm traces, the one API that the analyzer, replay and notebooks use.

Why streaming: a trace of a large service holds hundreds of millions of dirty-page events. The
per-sample and per-segment columns are small (samples x processes) and are loaded whole; the
events are read in chunks of whole samples, decoded from their delta coding with vectorised numpy,
and handed out as flat arrays. No reader builds a pages x samples matrix.

A file cut short (SIGKILL, full disk) is trimmed to its longest consistent prefix of samples, so
everything that was flushed can be read; a file whose writer died in the middle of an HDF5 flush
is read through `calm.trace.recovery` (without modifying it). Layout: `calm.trace.format` and FORMAT.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from calm.core.errors import CalmError
from calm.trace import format as tf
from calm.trace.heap import HeapCheck
from calm.trace.info import ProcessInfo, TraceInfo, recording_identity  # noqa: F401 (re-exported)
from calm.trace.recovery import EoaRepairedFile, needs_eoa_repair
from calm.trace.maps import MapsTable


@dataclass
class RoundCosts:
    """The observer's cost per sample (1.1 traces; None in a 1.0 trace)."""

    read_s: np.ndarray  # wall seconds reading the processes in the round that read the sample
    cpu_s: np.ndarray  # calm's CPU seconds over that round
    pages_read: np.ndarray  # pages (contents or page-table entries) read in that round


@dataclass
class TraceChunk:
    """A run of whole samples [first_sample, stop_sample) with their segments and dirty pages.

    Segment arrays have one entry per (sample, process); event arrays one entry per dirty page.
    """

    first_sample: int
    stop_sample: int
    segment_sample: np.ndarray  # int64
    segment_process: np.ndarray  # uint32, row in Trace.processes
    segment_n_dirty: np.ndarray  # uint32
    segment_n_resident: np.ndarray  # uint64
    event_sample: np.ndarray  # int64
    event_process: np.ndarray  # uint32
    vpn: np.ndarray  # uint64, sorted within each (sample, process)


def _text(value: object) -> str:
    """A string attribute or column; bytes that are not UTF-8 (a damaged file) become U+FFFD."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# Page sizes a trace may declare: any other value (0 in a damaged file) would make every address
# computation meaningless, or divide by zero.
PAGE_SIZES = tuple(1 << k for k in range(9, 31))
# What h5py raises where a file is damaged, depending on which structure the damage hit: OSError
# (a chunk's filter, a truncated read), KeyError (an object header: "bad object header version"),
# RuntimeError (a heap or a datatype), ValueError (a shape or selection). Every lazy read guards
# with this, so a damaged file is one error line wherever a reader first touches the damage.
DAMAGE_ERRORS = (OSError, KeyError, ValueError, RuntimeError)


class Trace:
    """An open, read-only calm trace. Use as a context manager or call `close()`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file, self._repaired_view = _open_trace_file(self.path)
        # True if the writer died mid-flush and the file is read through a repaired superblock.
        self.eoa_repaired = self._repaired_view is not None
        self._maps_cache: dict[int, list[tuple[int, MapsTable]]] | None = None
        # True if some strings (names, map paths) lie in a damaged heap and were left out.
        self.damaged_strings = False
        self._heap = HeapCheck(self.path)
        try:
            self.info = self._read_info()
            self._load_index()
            self.processes = self._read_processes()
        except CalmError:
            self.close()
            raise
        except (*DAMAGE_ERRORS, TypeError) as exc:
            self.close()
            raise CalmError(f"{self.path} is not a readable calm trace: {exc}") from exc

    # -- metadata ------------------------------------------------------------------------------
    def _read_info(self) -> TraceInfo:
        a = self._file.attrs
        version = int(a["format_version"])
        if version > tf.FORMAT_VERSION:
            raise CalmError(
                f"{self.path} uses trace format {version}; this calm reads up to {tf.FORMAT_VERSION}"
            )
        command = a.get("command", "[]")
        notes = a.get("notes", "[]")
        page_size, interval = int(a["page_size"]), float(a["interval"])
        if page_size not in PAGE_SIZES:
            raise CalmError(f"{self.path} is corrupt: its page size is {page_size} bytes "
                            "(a power of two of at least 512 was expected)")
        if not (math.isfinite(interval) and interval > 0):
            raise CalmError(f"{self.path} is corrupt: its sampling interval is {interval} s")
        return TraceInfo(
            format_version=version,
            format_minor=int(a.get("format_minor", 0)),
            page_size=page_size,
            backend=_text(a["backend"]),
            backend_method=_text(a.get("backend_method", "")),
            interval=interval,
            kernel_release=_text(a.get("kernel_release", "")),
            hostname=_text(a.get("hostname", "")),
            start_time=_text(a.get("start_time", "")),
            start_time_unix=float(a.get("start_time_unix", 0.0)),
            start_monotonic=float(a.get("start_monotonic", 0.0)),
            tool_version=_text(a.get("tool_version", "")),
            command=json.loads(_text(command)) if command else [],
            status=_text(a.get("status", "")),
            end_reason=_text(a.get("end_reason", "")),
            regions=tuple(json.loads(_text(a["regions"]))) if "regions" in a else (),
            shared_writes=_text(a.get("shared_writes", "")),
            notes=tuple(json.loads(_text(notes)) if notes else ()),
            nice=int(a.get("nice", 0)),
            cmdline_recorded=bool(int(a.get("cmdline_recorded", 1))),
        )

    def _load_index(self) -> None:
        """Loads sample and segment columns and trims to the longest consistent prefix."""
        samples, segments = self._file["samples"], self._file["segments"]
        n_s = min(samples[c].shape[0] for c in tf.SAMPLE_COLUMNS if c in samples)
        n_g = min(segments[c].shape[0] for c in tf.SEGMENT_COLUMNS if c in segments)
        n_e = self._file["events/vpn_delta"].shape[0]
        segment_end = samples["segment_end"][:n_s].astype(np.int64)
        event_end = segments["event_end"][:n_g].astype(np.int64)
        # A sample is usable if its offsets only point at rows that exist and never go backwards
        # (a half-written chunk reads as zeros).
        ok = (segment_end <= n_g) & (np.diff(segment_end, prepend=0) >= 0)
        sample_event_end = np.zeros(n_s, dtype=np.int64)
        has = ok & (segment_end > 0)
        sample_event_end[has] = event_end[segment_end[has] - 1]
        ok &= (sample_event_end <= n_e) & (np.diff(sample_event_end, prepend=0) >= 0)
        bad = np.flatnonzero(~ok)
        n_s = int(bad[0]) if bad.size else n_s
        n_g = int(segment_end[n_s - 1]) if n_s else 0
        event_end = event_end[:n_g]
        if n_g and np.any(np.diff(event_end, prepend=0) < 0):
            raise CalmError(f"{self.path} is corrupt: event offsets go backwards")
        self._sample_event_end = sample_event_end[:n_s]
        self.n_samples = n_s
        self.n_segments = n_g
        self.n_events = int(event_end[-1]) if n_g else 0
        self.trimmed = n_s < samples["t_end"].shape[0]
        self.t_start = samples["t_start"][:n_s]
        self.t_end = samples["t_end"][:n_s]
        self._segment_end = segment_end[:n_s]
        self._event_end = event_end
        self.segment_sample = np.repeat(np.arange(n_s, dtype=np.int64),
                                        np.diff(self._segment_end, prepend=0))
        self.segment_process = segments["process"][:n_g]
        self.segment_n_dirty = segments["n_dirty"][:n_g]
        self.segment_n_resident = segments["n_resident"][:n_g]
        # 1.1: proportional resident pages per segment (None in a 1.0 trace)
        self.segment_pss = segments["pss"][:n_g] if "pss" in segments else None
        self.round_costs = (RoundCosts(samples["round_read_s"][:n_s], samples["round_cpu_s"][:n_s],
                                       samples["round_pages_read"][:n_s])
                            if all(c in samples for c in tf.SINCE_1_1["samples"]) else None)

    def _readable_rows(self, group: h5py.Group, columns: dict[str, str], n: int) -> int:
        """How many of the first `n` rows have all their strings in sound heaps (see calm.trace.heap)."""
        for name, code in columns.items():
            if code == "str":
                bad = self._heap.first_damaged_row(group[name])
                if bad is not None and bad < n:
                    n = bad
                    self.damaged_strings = True
        return n

    def _read_processes(self) -> list[ProcessInfo]:
        g = self._file["processes"]
        present = {c: code for c, code in tf.PROCESS_COLUMNS.items() if c in g}  # title: 1.1
        n = min(g[c].shape[0] for c in present)
        good = self._readable_rows(g, present, n)
        cols = {c: g[c][:n] if code != "str" else list(g[c][:good]) + [b""] * (n - good)
                for c, code in present.items()}
        identity = list(zip(cols["pid"].tolist(), cols["start_time_unix"].tolist()))
        last_row = {key: i for i, key in enumerate(identity)}  # an exec continues a process in a later row
        out = []
        for i in range(n):
            last = int(cols["last_sample"][i])
            out.append(ProcessInfo(
                row=i, pid=int(cols["pid"][i]), ppid=int(cols["ppid"][i]),
                name=_text(cols["name"][i]), cmdline=json.loads(_text(cols["cmdline"][i]) or "[]"),
                exe=_text(cols["exe"][i]), start_time_unix=float(cols["start_time_unix"][i]),
                first_sample=int(cols["first_sample"][i]),
                last_sample=min(last, self.n_samples - 1) if last >= 0 else last,
                exit_sample=int(cols["exit_sample"][i]),
                title=_text(cols["title"][i]) if "title" in cols else "",
                execed=int(cols["exit_sample"][i]) >= 0 and last_row[identity[i]] > i,
            ))
        return out

    # -- durations -------------------------------------------------------------------------------
    @property
    def page_size(self) -> int:
        return self.info.page_size

    @property
    def duration(self) -> float:
        """The recording's span (FORMAT.md): seconds from the first sample's t_start to the last
        sample's t_end, the time whose writes the samples hold."""
        return float(self.t_end[-1] - self.t_start[0]) if self.n_samples else 0.0

    @property
    def identity(self) -> dict:
        return recording_identity(self.info, self.n_samples)

    @property
    def baseline_read(self) -> float:
        """Seconds from the recording's start (start_monotonic) to the first sample's t_start:
        opening the targets and their baseline read, whose writes no sample holds."""
        return float(self.t_start[0]) if self.n_samples else 0.0

    def sample_periods(self) -> np.ndarray:
        """Seconds of writes each sample stands for: the time between consecutive reads.

        [t_start, t_end] is only the quiet window between two reading rounds; writes made while a
        round reads land in that sample or the next, so a sample represents the whole period from
        one round's start (t_end) to the next. The first sample has no previous round in the file:
        it gets the median period of the others (the requested interval if it is alone).
        """
        period = np.diff(self.t_end, prepend=np.nan)
        if period.size > 1:
            period[0] = np.median(period[1:])
        elif period.size:
            period[0] = self.info.interval
        return np.where(period > 0, period, self.info.interval)

    # -- events ----------------------------------------------------------------------------------
    def iter_chunks(self, max_events: int = 1 << 22, first_sample: int = 0,
                    stop_sample: int | None = None) -> Iterator[TraceChunk]:
        """Yields chunks of whole samples holding about `max_events` dirty pages each."""
        stop_sample = self.n_samples if stop_sample is None else min(stop_sample, self.n_samples)
        events = self._file["events/vpn_delta"]
        s = first_sample
        while s < stop_sample:
            g0 = int(self._segment_end[s - 1]) if s else 0
            e0 = int(self._sample_event_end[s - 1]) if s else 0
            # Whole samples up to the event budget, at least one.
            n_fit = int(np.searchsorted(self._sample_event_end[s:stop_sample], e0 + max_events,
                                        side="right"))
            stop = s + max(1, n_fit)
            g1 = int(self._segment_end[stop - 1])
            e1 = int(self._sample_event_end[stop - 1])
            deltas = self._read(events, e0, e1) if e1 > e0 else np.empty(0, np.uint64)
            yield self._decode(s, stop, g0, g1, deltas)
            s = stop

    def _read(self, dataset: h5py.Dataset, lo: int, hi: int) -> np.ndarray:
        """A slice of a dataset; a damaged chunk becomes one clear error, not an HDF5 traceback."""
        try:
            return dataset[lo:hi]
        except DAMAGE_ERRORS as exc:
            raise CalmError(f"{self.path} is corrupt: cannot read {dataset.name} rows {lo}-{hi} ({exc})") from None

    def _decode(self, s0: int, s1: int, g0: int, g1: int, deltas: np.ndarray) -> TraceChunk:
        n_dirty = self.segment_n_dirty[g0:g1].astype(np.int64)
        csum = np.cumsum(deltas, dtype=np.uint64)
        seg_first = np.cumsum(n_dirty) - n_dirty  # index of each segment's first event
        base = np.zeros(g1 - g0, dtype=np.uint64)
        has_prev = seg_first > 0
        base[has_prev] = csum[seg_first[has_prev] - 1]
        vpn = csum - np.repeat(base, n_dirty)
        seg_sample = self.segment_sample[g0:g1]
        seg_process = self.segment_process[g0:g1]
        return TraceChunk(
            first_sample=s0, stop_sample=s1, segment_sample=seg_sample, segment_process=seg_process,
            segment_n_dirty=self.segment_n_dirty[g0:g1],
            segment_n_resident=self.segment_n_resident[g0:g1],
            event_sample=np.repeat(seg_sample, n_dirty), event_process=np.repeat(seg_process, n_dirty),
            vpn=vpn,
        )

    def iter_samples(self, max_events: int = 1 << 22) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Yields (sample, {process row: sorted dirty vpns}) for every sample, in order."""
        for chunk in self.iter_chunks(max_events):
            bounds = np.concatenate(([0], np.cumsum(chunk.segment_n_dirty, dtype=np.int64)))
            g = 0
            for s in range(chunk.first_sample, chunk.stop_sample):
                per_process: dict[int, np.ndarray] = {}
                while g < len(chunk.segment_sample) and chunk.segment_sample[g] == s:
                    per_process[int(chunk.segment_process[g])] = chunk.vpn[bounds[g]:bounds[g + 1]]
                    g += 1
                yield s, per_process

    # -- memory maps -----------------------------------------------------------------------------
    def map_snapshots(self, process: int) -> list[tuple[int, MapsTable]]:
        """[(first sample it is valid for, regions)] for one process row, in sample order."""
        return self._all_maps().get(process, [])

    def _all_maps(self) -> dict[int, list[tuple[int, MapsTable]]]:
        """Every process's snapshots, read from the file once (the maps group is small)."""
        if self._maps_cache is None:
            try:
                self._maps_cache = self._read_all_maps()
            except DAMAGE_ERRORS as exc:
                raise CalmError(f"{self.path} is corrupt: cannot read its memory maps ({exc})") from None
        return self._maps_cache

    def _read_all_maps(self) -> dict[int, list[tuple[int, MapsTable]]]:
        g = self._file["maps"]
        present = {c: code for c, code in tf.MAP_COLUMNS.items() if c in g}  # dev: 1.1
        n = self._readable_rows(g, present, min(g[c].shape[0] for c in present))
        cols = {c: g[c][:n] for c in ("process", "sample", "start", "end", "offset", "inode")}
        dev = g["dev"][:n] if "dev" in g else np.zeros(n, dtype=np.uint64)
        perms = [_text(x) for x in g["perms"][:n]]
        paths = [_text(x) for x in g["path"][:n]]
        order = np.lexsort((cols["sample"], cols["process"]))  # stable: rows keep file order
        key = cols["process"][order].astype(np.int64) << 32 | cols["sample"][order].astype(np.int64)
        bounds = np.flatnonzero(np.diff(key, prepend=-1, append=-1) != 0)
        out: dict[int, list[tuple[int, MapsTable]]] = {}
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):  # one iteration per snapshot
            idx = order[a:b]
            # Two snapshots may share a sample (the baseline's, then the map the first round found
            # changed, e.g. after ld.so's RELRO mprotect): each is sorted by address, so the last
            # one begins where the addresses restart. It is the map that sample was read with.
            starts = cols["start"][idx].astype(np.uint64)  # unsigned: [vsyscall] is above 2**63
            restart = np.flatnonzero(starts[1:] <= starts[:-1])
            if restart.size:
                idx = idx[int(restart[-1]) + 1:]
            table = MapsTable(cols["start"][idx], cols["end"][idx], [perms[i] for i in idx],
                              cols["offset"][idx], cols["inode"][idx], [paths[i] for i in idx], dev[idx])
            out.setdefault(int(cols["process"][idx[0]]), []).append((int(cols["sample"][idx[0]]), table))
        return out

    def residency(self) -> dict[str, np.ndarray] | None:
        """The residency runs (columns of `tf.RESIDENCY_COLUMNS`), or None for a trace recorded
        before they existed (format minor 0)."""
        try:
            if "residency" not in self._file:
                return None
            g = self._file["residency"]
            n = min(g[c].shape[0] for c in tf.RESIDENCY_COLUMNS)
            columns = {c: g[c] for c in tf.RESIDENCY_COLUMNS}
        except DAMAGE_ERRORS as exc:
            raise CalmError(f"{self.path} is corrupt: cannot read its residency ({exc})") from None
        return {c: self._read(d, 0, n) for c, d in columns.items()}

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        self._file.close()
        self._heap.close()
        if self._repaired_view is not None:
            self._repaired_view.close()

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_trace_file(path: Path) -> tuple[h5py.File, EoaRepairedFile | None]:
    """The open HDF5 file, and the repaired view under it if its writer died mid-flush."""
    if not path.exists():
        raise CalmError(f"trace {path} does not exist")
    if path.is_dir():
        raise CalmError(f"trace {path} is a directory")
    if not h5py.is_hdf5(path):
        raise CalmError(f"{path} is not an HDF5 file (truncated or not a trace)")
    view: EoaRepairedFile | None = None
    try:
        stale = needs_eoa_repair(path)
        if stale is not None:
            view = EoaRepairedFile(path, stale)
        f = h5py.File(view if view is not None else path, "r")
    except OSError as exc:
        if view is not None:
            view.close()
        raise CalmError(f"{path} is corrupt or truncated: {exc}") from None
    try:
        heap = HeapCheck(path)
        try:
            sound = heap.attributes_sound(h5py.h5o.get_info(f.id).addr)
        finally:
            heap.close()
        if not sound:
            problem = f"{path} is corrupt: its attributes lie in a damaged part of the file"
        else:
            is_trace = _text(f.attrs.get("format", "")) == tf.FORMAT_NAME
            problem = "" if is_trace else f"{path} is an HDF5 file but not a calm trace"
    except DAMAGE_ERRORS as exc:
        problem = f"{path} is corrupt or truncated: {exc}"
    if problem:
        f.close()
        if view is not None:
            view.close()
        raise CalmError(problem)
    return f, view
