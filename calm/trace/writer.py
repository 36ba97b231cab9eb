"""Append-only writer of calm traces.

Why it buffers: one HDF5 append per (sample, process) would cost more than the sampling itself, so
samples accumulate in memory and go to disk in one append per column at `flush()`, which the
recorder calls at least once a second. Between flushes nothing touches the file, so a SIGKILL
leaves the file as of the last flush; columns are appended in dependency order (events, segments,
samples) and the reader trims any half-written tail. The layout is in `calm.trace.format`.

Where the file lives (calm.core.paths): it is created as a private (0600) temporary file beside
its name, opened by HDF5 through /proc/self/fd (so HDF5 opens exactly that file, whatever happens
to its name), and renamed to its name when the first sample is on disk. A SIGKILL before that
leaves no stub under the name that would need --force; after it, a readable trace.

A full disk: before each flush the writer reserves the space that flush can take (see
calm.trace.space); if it cannot, the flush is not attempted and `DiskFull` is raised with the
file intact as of the previous flush. `close()` then still marks the file (a reserve is kept for
that) and keeps it uncompacted if the compacted copy does not fit either.
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
from calm.core.paths import check_output_path, create_temp, publish
from calm.trace import format as tf
from calm.trace.maps import MapsTable
from calm.trace.space import DiskFull, SpaceReserve

# Bytes a flush may take beyond its data (object headers, chunk-index nodes, the superblock), and
# the reserve always kept for close (status attributes, the last metadata); both are upper bounds
# checked by tests/test_faults_disk_full.py (a flush never grows the file by more than it reserved).
FLUSH_METADATA_BYTES = 16 << 10
PER_DATASET_BYTES = 4 << 10
CLOSE_RESERVE_BYTES = 64 << 10
CREATE_BYTES = 64 << 10  # an empty trace is about 19 KiB


@dataclass
class RoundCost:
    """What reading one sample cost the observer (the `samples/round_*` columns)."""

    read_s: float = 0.0  # wall-clock seconds reading the processes
    cpu_s: float = 0.0  # calm's CPU seconds over the round
    pages_read: int = 0  # pages whose contents or page-table entries were read


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

    def rows(self, name: str) -> int:
        """Rows waiting in column `name`."""
        return sum(c.size if isinstance(c, np.ndarray) else len(c) if isinstance(c, list) else 1
                   for c in self.parts[name])

    def text_bytes(self, name: str) -> int:
        """UTF-8 bytes of the strings waiting in column `name` (HDF5 keeps them in its global heap)."""
        chunks = self.parts[name]
        return sum(len(s.encode()) for chunk in chunks for s in (chunk if isinstance(chunk, list) else [chunk]))

    def discard(self) -> None:
        self.parts = {name: [] for name in self.columns}

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
        self._force = force
        check_output_path(self.path, force=force)
        self._fd, self._temp = create_temp(self.path)
        self._published = False
        self._space = SpaceReserve(self._fd)
        self.disk_full = False
        try:
            # "aggregate": space freed while recording is never reused. With HDF5's default
            # free-space manager, a chunk rewritten at one flush could land on the bytes of the
            # chunk that the on-disk index still points to, and a SIGKILL before the next flush
            # then corrupts flushed data (tests/test_trace_format.py kills writers to check).
            # Reserved after opening (HDF5's "w" truncates, which frees reserved blocks), and
            # checked before, so that HDF5 does not create its file on a full disk.
            self._space.check_free(CREATE_BYTES + CLOSE_RESERVE_BYTES)
            self._file = h5py.File(_fd_path(self._fd), "w", fs_strategy="aggregate")
            self._space.reserve(CREATE_BYTES + CLOSE_RESERVE_BYTES)
        except (OSError, DiskFull) as exc:
            self._abandon()
            if isinstance(exc, DiskFull):
                raise DiskFull(f"cannot create trace file {self.path}: the disk is full") from None
            raise CalmError(f"cannot create trace file {self.path}: {exc}") from exc
        self._file.attrs["format"] = tf.FORMAT_NAME
        self._file.attrs["format_version"] = tf.FORMAT_VERSION
        self._file.attrs["format_minor"] = tf.FORMAT_MINOR
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
        self._rows = {name: 0 for name in tf.GROUPS}  # rows on disk per group
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
                     cmdline: list[str], exe: str, title: str = "") -> int:
        """Registers a process; returns its row in /processes."""
        row = self._n_processes
        self._n_processes += 1
        self._pending["processes"].add(
            pid=pid, ppid=ppid, start_time_unix=start_time_unix, first_sample=-1, last_sample=-1,
            exit_sample=-1, name=name, cmdline=json.dumps(cmdline), exe=exe, title=title,
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

    @property
    def n_flushed(self) -> int:
        """Samples on disk (what a SIGKILL or a full disk would leave)."""
        return self._rows["samples"]

    def add_sample(self, t_start: float, t_end: float,
                   per_process: dict[int, tuple[np.ndarray, int]], *,
                   pss: dict[int, int] | None = None, cost: RoundCost | None = None) -> None:
        """Appends one sample: for each process row, its sorted unique dirty vpns and resident count;
        `pss` its proportional resident pages (0 where unknown), `cost` the observer's round."""
        sample = self._n_samples
        pss = pss or {}
        cost = cost or RoundCost()
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
                                          event_end=self._n_events, pss=pss.get(row, 0))
            updates = self._process_updates.setdefault(row, {})
            if self._first_sample_pending.pop(row, False):
                updates["first_sample"] = sample
            updates["last_sample"] = sample
        self._pending["samples"].add(t_start=t_start, t_end=t_end, segment_end=self._n_segments,
                                     round_read_s=cost.read_s, round_cpu_s=cost.cpu_s,
                                     round_pages_read=cost.pages_read)
        self._n_samples += 1

    def set_round_cpu(self, cpu_s: float) -> None:
        """Sets the CPU time of the round that read the last sample (known only once the round,
        including work after `add_sample`, is over). Must come before the next flush."""
        parts = self._pending["samples"].parts["round_cpu_s"]
        if parts:
            parts[-1] = cpu_s

    def add_maps(self, row: int, sample: int, regions: MapsTable) -> None:
        """Appends a memory-map snapshot of process `row`, valid from `sample` on."""
        n = len(regions.start)
        self._pending["maps"].add(
            process=np.full(n, row, dtype=np.uint32), sample=np.full(n, sample, dtype=np.uint32),
            start=regions.start, end=regions.end, perms=list(regions.perms), offset=regions.offset,
            inode=regions.inode, path=list(regions.path), dev=regions.dev,
        )

    def add_residency(self, row: int, sample: int, start_vpn: np.ndarray, pages: np.ndarray,
                      state: np.ndarray) -> None:
        """Appends the residency snapshot of process `row` taken before sample `sample`: runs
        (first page, pages, state) covering the regions its backend reads (`tf.RESIDENCY_*`)."""
        n = len(start_vpn)
        self._pending["residency"].add(
            process=np.full(n, row, dtype=np.uint32), sample=np.full(n, sample, dtype=np.uint32),
            start_vpn=start_vpn, pages=pages, state=state)

    # -- durability ----------------------------------------------------------------------------
    def flush_bytes(self) -> int:
        """An upper bound of what the next flush adds to the file (see FLUSH_METADATA_BYTES).

        Appending to a chunked, compressed dataset rewrites its last, partly filled chunk whole
        (to new space: freed space is never reused while recording), so the bound counts the
        rows from that chunk's start, plus deflate's worst-case growth, plus the strings' heap."""
        total = FLUSH_METADATA_BYTES
        for group_name, columns in tf.GROUPS.items():
            pending = self._pending[group_name]
            chunk = tf.CHUNK_ROWS[group_name]
            old = self._rows[group_name]
            for name, code in columns.items():
                new = pending.rows(name)
                if new == 0:
                    continue
                rows = old + new - (old // chunk) * chunk
                itemsize = 16 if code == "str" else np.dtype(code).itemsize
                total += PER_DATASET_BYTES + int(rows * itemsize * 1.01) + 64 * (rows // chunk + 1)
                if code == "str":
                    total += pending.text_bytes(name) + 16 * new + 4096
        updated = {column for updates in self._process_updates.values() for column in updates}
        total += len(updated) * (PER_DATASET_BYTES + tf.CHUNK_ROWS["processes"] * 8 * 2)
        return total

    def flush(self) -> None:
        """Writes everything pending, in dependency order, then asks HDF5 to flush.

        Raises DiskFull (before writing anything) when the disk has no room for it."""
        if self.disk_full:
            raise DiskFull("the disk is full")
        try:
            self._space.reserve(self.flush_bytes() + CLOSE_RESERVE_BYTES)
        except DiskFull as exc:
            self.disk_full = True
            raise DiskFull(f"disk full: {exc} of trace {self.path}; it holds {self.n_flushed} samples") from None
        for group_name in ("events", "segments", "samples", "processes", "maps", "residency"):
            columns = self._pending[group_name].take()
            self._append_group(group_name, columns)
            self._rows[group_name] += len(next(iter(columns.values())))
        processes = self._file["processes"]
        for row, updates in self._process_updates.items():
            for column, value in updates.items():
                processes[column][row] = value
        self._process_updates.clear()
        self._file.flush()
        self.last_flush = time.monotonic()
        if not self._published and self.n_flushed:
            self._publish(self._temp)

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
        """Final flush; marks the file complete (or interrupted, or failed) and closes it.

        After a full disk, what was not flushed is dropped and only the status is written (into
        the reserve kept for it). A failed recording that never got a sample to disk leaves
        nothing behind."""
        if self._fd < 0:
            return
        try:
            if not self.disk_full:
                try:
                    self.flush()
                except DiskFull:
                    pass
            if self.disk_full:
                for pending in self._pending.values():
                    pending.discard()
                self._process_updates.clear()
            self._file.attrs["status"] = status
            self._file.attrs["end_reason"] = end_reason
            self._file.close()
        except BaseException:
            self._abandon_if_empty()
            raise
        if status == "failed" and not self._published and self.n_flushed == 0:
            self._abandon()
            return
        self._space.release()  # the reserve is not needed any more, the compacted copy may need it
        try:
            self._compact()
        finally:
            try:
                if not self._published:
                    self._publish(self._temp)
            finally:
                os.close(self._fd)
                self._fd = -1

    def file_size(self) -> int:
        try:
            return os.fstat(self._fd).st_size if self._fd >= 0 else self.path.stat().st_size
        except OSError:
            return 0

    # -- the file's name and space -------------------------------------------------------------
    def _publish(self, source: Path) -> None:
        """Gives the file its name (no overwrite without --force: calm.core.paths.publish)."""
        publish(source, self.path, force=self._force or self._published)
        self._published = True

    def _abandon_if_empty(self) -> None:
        if not self._published:
            self._abandon()

    def _abandon(self) -> None:
        """Removes an unpublished temporary file and forgets it."""
        try:
            if getattr(self, "_file", None) is not None and self._file.id.valid:
                self._file.close()
        except (OSError, RuntimeError):
            pass  # the file is being thrown away
        finally:
            if not self._published:
                self._temp.unlink(missing_ok=True)
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _compact(self) -> None:
        """Rewrites the closed trace without the space that rewritten chunks left behind.

        Recording never reuses freed space (crash safety, see __init__), so a long recording
        carries several times its size in dead chunks. HDF5's object copy moves compressed chunks
        as they are, so this costs about one read and write of the live data. The copy goes to a
        new private temporary file (calm.core.paths) and replaces the trace by an atomic rename;
        if it does not fit on the disk or anything fails, the trace is kept as it is (valid, only
        larger)."""
        need = os.fstat(self._fd).st_size + CLOSE_RESERVE_BYTES
        try:
            self._space.check_free(need)
            fd, temp = create_temp(self.path)
        except (DiskFull, CalmError):
            return
        try:
            with h5py.File(_fd_path(self._fd), "r") as src, h5py.File(_fd_path(fd), "w") as dst:
                SpaceReserve(fd).reserve(need)
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    src.copy(src[name], dst, name=name)
        except (OSError, DiskFull):
            temp.unlink(missing_ok=True)
            return
        finally:
            os.close(fd)
        if self._published:
            publish(temp, self.path, force=True)
        else:
            self._publish(temp)
            self._temp.unlink(missing_ok=True)


def _fd_path(fd: int) -> str:
    """The path that opens exactly the file open as `fd`, whatever happened to its name."""
    return f"/proc/self/fd/{fd}"
