"""Append-only writer of calm traces.

Why it buffers: one HDF5 append per (sample, process) would cost more than the sampling itself, so
samples accumulate in memory and go to disk in one append per column at `flush()`, which the
recorder calls at least once a second. Between flushes nothing touches the file, so a SIGKILL
leaves the file as of the last flush; columns are appended in dependency order (events, segments,
samples) and the reader trims any half-written tail. The layout is in `calm.trace.format`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from calm.core.errors import CalmError
from calm.core.paths import check_output_path
from calm.trace import format as tf
from calm.trace.maps import MapsTable


def _h5_dtype(code: str) -> np.dtype | h5py.Datatype:
    return h5py.string_dtype("utf-8") if code == "str" else np.dtype(code)


@dataclass
class _PendingColumns:
    """Rows waiting for the next flush, per column of one group."""

    columns: dict[str, str]
    parts: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parts = {name: [] for name in self.columns}

    def add(self, **values: object) -> None:
        for name in self.columns:
            self.parts[name].append(values[name])

    def take(self) -> dict[str, np.ndarray | list]:
        out: dict[str, np.ndarray | list] = {}
        for name, code in self.columns.items():
            chunks = self.parts[name]
            if code == "str":
                out[name] = [s for chunk in chunks for s in (chunk if isinstance(chunk, list) else [chunk])]
            elif chunks:
                out[name] = np.concatenate([np.atleast_1d(np.asarray(c, dtype=code)) for c in chunks])
            else:
                out[name] = np.empty(0, dtype=code)
            self.parts[name] = []
        return out


class TraceWriter:
    """Creates a trace file and appends samples to it.

    Usage: `open_process()` for each followed process (returns its row), then per sample
    `add_sample(t_start, t_end, {row: (dirty_vpns, n_resident)})`, `add_maps()` when a process's
    map changed, `close_process()` when one exits, `flush()` regularly and `close()` at the end.
    """

    def __init__(self, path: str | os.PathLike, *, force: bool, attrs: dict[str, object]) -> None:
        self.path = Path(path)
        check_output_path(self.path, force=force)
        try:
            # "aggregate": space freed while recording is never reused. With HDF5's default
            # free-space manager, a chunk rewritten at one flush could land on the bytes of the
            # chunk that the on-disk index still points to, and a SIGKILL before the next flush
            # then corrupts flushed data (tests/test_trace_format.py kills writers to check).
            self._file = h5py.File(self.path, "w", fs_strategy="aggregate")
        except OSError as exc:
            raise CalmError(f"cannot create trace file {self.path}: {exc}") from exc
        self._file.attrs["format"] = tf.FORMAT_NAME
        self._file.attrs["format_version"] = tf.FORMAT_VERSION
        self._file.attrs["status"] = "recording"
        self._file.attrs["end_reason"] = ""
        for key, value in attrs.items():
            self._file.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        for group_name, columns in tf.GROUPS.items():
            group = self._file.create_group(group_name)
            for name, code in columns.items():
                group.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    dtype=_h5_dtype(code),
                    chunks=(tf.CHUNK_ROWS[group_name],),
                    compression="gzip",
                    compression_opts=tf.DEFLATE_LEVEL,
                    shuffle=code != "str",
                )
        self._pending = {name: _PendingColumns(cols) for name, cols in tf.GROUPS.items()}
        self._n_samples = 0
        self._n_segments = 0
        self._n_events = 0
        self._n_processes = 0
        self._process_updates: dict[int, dict[str, int]] = {}
        self._first_sample_pending: dict[int, bool] = {}
        self._file.flush()
        self.last_flush = time.monotonic()

    # -- processes -----------------------------------------------------------------------------
    def open_process(self, *, pid: int, ppid: int, start_time_unix: float, name: str,
                     cmdline: list[str], exe: str) -> int:
        """Registers a process; returns its row in /processes."""
        row = self._n_processes
        self._n_processes += 1
        self._pending["processes"].add(
            pid=pid, ppid=ppid, start_time_unix=start_time_unix, first_sample=-1, last_sample=-1,
            exit_sample=-1, name=name, cmdline=json.dumps(cmdline), exe=exe,
        )
        self._first_sample_pending[row] = True
        return row

    def close_process(self, row: int, *, exit_sample: int) -> None:
        """Marks a process as gone: its stream ends; the recording goes on for the others."""
        self._process_updates.setdefault(row, {})["exit_sample"] = exit_sample

    # -- samples -------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return self._n_samples

    def add_sample(self, t_start: float, t_end: float,
                   per_process: dict[int, tuple[np.ndarray, int]]) -> None:
        """Appends one sample: for each process row, its sorted unique dirty vpns and resident count."""
        sample = self._n_samples
        for row in sorted(per_process):
            vpns, n_resident = per_process[row]
            vpns = np.asarray(vpns, dtype=np.uint64)
            if vpns.size:
                deltas = np.empty_like(vpns)
                deltas[0] = vpns[0]
                np.subtract(vpns[1:], vpns[:-1], out=deltas[1:])
                self._pending["events"].add(vpn_delta=deltas)
            self._n_events += vpns.size
            self._n_segments += 1
            self._pending["segments"].add(process=row, n_dirty=vpns.size, n_resident=n_resident,
                                          event_end=self._n_events)
            updates = self._process_updates.setdefault(row, {})
            if self._first_sample_pending.pop(row, False):
                updates["first_sample"] = sample
            updates["last_sample"] = sample
        self._pending["samples"].add(t_start=t_start, t_end=t_end, segment_end=self._n_segments)
        self._n_samples += 1

    def add_maps(self, row: int, sample: int, regions: MapsTable) -> None:
        """Appends a memory-map snapshot of process `row`, valid from `sample` on."""
        n = len(regions.start)
        self._pending["maps"].add(
            process=np.full(n, row, dtype=np.uint32), sample=np.full(n, sample, dtype=np.uint32),
            start=regions.start, end=regions.end, perms=list(regions.perms), offset=regions.offset,
            inode=regions.inode, path=list(regions.path),
        )

    # -- durability ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Writes everything pending, in dependency order, then asks HDF5 to flush."""
        for group_name in ("events", "segments", "samples", "processes", "maps"):
            self._append_group(group_name, self._pending[group_name].take())
        processes = self._file["processes"]
        for row, updates in self._process_updates.items():
            for column, value in updates.items():
                processes[column][row] = value
        self._process_updates.clear()
        self._file.flush()
        self.last_flush = time.monotonic()

    def _append_group(self, group_name: str, columns: dict[str, np.ndarray | list]) -> None:
        group = self._file[group_name]
        for name, values in columns.items():
            if len(values) == 0:
                continue
            dataset = group[name]
            old = dataset.shape[0]
            dataset.resize((old + len(values),))
            dataset[old:] = values

    def close(self, *, status: str, end_reason: str) -> None:
        """Final flush; marks the file complete (or interrupted) and closes it."""
        if not self._file.id.valid:
            return
        self.flush()
        self._file.attrs["status"] = status
        self._file.attrs["end_reason"] = end_reason
        self._file.close()
        _compact(self.path)

    def file_size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


def _compact(path: Path) -> None:
    """Rewrites a closed trace without the space that rewritten chunks left behind.

    Recording never reuses freed space (crash safety, see __init__), so a long recording carries
    several times its size in dead chunks. HDF5's object copy moves compressed chunks as they are,
    so this costs about one read and write of the live data; the original stays until the atomic
    rename, and if anything fails it is kept as it is (valid, only larger).
    """
    tmp = path.with_name(f".{path.name}.compact")
    try:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
