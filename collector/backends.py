"""The ways of telling which pages a process dirtied during an interval.

A backend is attached to one process (`attach`), establishes a baseline, and on each `sample()`
returns the sorted virtual page numbers written since the previous call plus the resident page
count, then re-arms itself for the next interval. Two backends:

- `SoftDirtyBackend` (primary): the kernel tracks writes. Read /proc/PID/pagemap, take pages with
  bit 55 set that are present or swapped, then write 4 to /proc/PID/clear_refs. Costs 8 bytes read
  per mapped virtual page. A write that lands between the read and the clear of the same process is
  lost (a window of microseconds to milliseconds, the same as CRIU's pre-dump). Needs a kernel with
  CONFIG_MEM_SOFT_DIRTY; `soft_dirty_supported()` checks it like CRIU does.
- `HashBackend` (portable fallback): read the process's writable resident memory through
  /proc/PID/mem and hash every page (`page_hash`); a page is dirty when its hash changed. Limits: a
  write that restores the previous bytes is invisible; cost grows with resident writable memory
  (it reads all of it every interval); a page that becomes resident during an interval counts as
  dirty when it holds anything but zeros, except a private file page that is still the file's own
  (not copied on write), which cannot have been written.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calm.core.errors import CalmError
from calm.collector import page_hash, procfs
from calm.collector.pagemap_scan import scan_soft_dirty, scan_supported
from calm.collector.procfs import Pagemap, ProcessGone
from calm.trace.maps import MapsTable

# Memory is read and hashed in blocks of this many pages (16 MiB).
MEM_BLOCK_PAGES = 4096


@dataclass
class Sample:
    """What one process did during one interval."""

    dirty_vpns: np.ndarray  # sorted unique uint64
    n_resident: int
    maps: MapsTable  # the map read at the end of the interval


def soft_dirty_supported() -> tuple[bool, str]:
    """Checks soft-dirty as CRIU's kerndat does: clear our own bits, write a page, look at bit 55.

    Returns (supported, reason). Without CONFIG_MEM_SOFT_DIRTY, clear_refs accepts "4" but the bit
    never appears, so the write test is the only reliable check.
    """
    size = mmap.PAGESIZE
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf[0] = 1  # make it resident first
        address = _mmap_address(buf)
        vpn = address // size
        pid = os.getpid()
        try:
            procfs.clear_soft_dirty(pid)
        except CalmError as exc:
            return False, f"cannot clear soft-dirty bits ({exc})"
        with Pagemap(pid) as pm:
            before = int(pm.read(vpn, vpn + 1)[0])
            buf[0] = 2
            after = int(pm.read(vpn, vpn + 1)[0])
        if after & int(procfs.PM_SOFT_DIRTY) and not before & int(procfs.PM_SOFT_DIRTY):
            return True, "soft-dirty bit set by a write after clear_refs"
        return False, "this kernel does not set the soft-dirty bit (built without CONFIG_MEM_SOFT_DIRTY)"
    finally:
        buf.close()


def _mmap_address(buf: mmap.mmap) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


class _ScannedMaps:
    """The regions a backend scans, recomputed only when the map changed."""

    def __init__(self, pid: int, select: Callable[[MapsTable], np.ndarray]) -> None:
        self.reader = procfs.MapsReader(pid)
        self._select = select
        self._maps: MapsTable | None = None
        self._scan: MapsTable | None = None

    def read(self) -> tuple[MapsTable, MapsTable]:
        maps = self.reader.read()
        if maps is not self._maps:
            self._maps, self._scan = maps, maps.select(self._select(maps))
        assert self._scan is not None
        return maps, self._scan


class SoftDirtyBackend:
    """Dirty pages from the kernel's soft-dirty bits (see module docstring)."""

    name = "soft-dirty"

    def __init__(self, pid: int, use_scan: bool = False) -> None:
        self.pid = pid
        self.use_scan = use_scan  # PAGEMAP_SCAN (Linux >= 6.8): only the dirty ranges come back
        Pagemap(pid).close()  # fail now, with a clear reason, if we may not read it
        self.maps = _ScannedMaps(pid, lambda m: m.scannable())

    def start(self) -> MapsTable:
        maps, _ = self.maps.read()
        procfs.clear_soft_dirty(self.pid)
        return maps

    def sample(self) -> Sample:
        maps, scan = self.maps.read()
        dirty: list[np.ndarray] = []
        n_resident = 0
        # Reopened every sample: an fd opened before an exec would go on reading the old memory.
        with Pagemap(self.pid) as pagemap:
            if self.use_scan:
                found = scan_soft_dirty(pagemap.fd, scan.start, scan.end, self.pid)
                procfs.clear_soft_dirty(self.pid)
                return Sample(found.dirty_vpns, found.n_resident, maps)
            for batch in procfs.iter_batches(pagemap, scan):
                b6, b7 = procfs.flag_bytes(batch.entries)
                resident = b7 >= procfs.B7_SWAPPED  # present or swapped
                n_resident += int(np.count_nonzero(resident))
                # bit 55 alone is not enough: a VMA created since the last clear reports
                # soft-dirty on every entry, resident or not
                idx = np.flatnonzero((b6 >= procfs.B6_SOFT_DIRTY) & resident)
                if idx.size:
                    dirty.append(batch.vpns(idx))
            procfs.clear_soft_dirty(self.pid)
        vpns = np.concatenate(dirty) if dirty else np.empty(0, np.uint64)
        return Sample(vpns, n_resident, maps)


class HashBackend:
    """Dirty pages from changes of per-page content hashes (see module docstring)."""

    name = "hash"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Pagemap(pid).close()  # fail now, with a clear reason, if we may not read it
        self.mem_fd = -1
        self._open_mem()
        os.close(self.mem_fd)
        self.mem_fd = -1
        self.maps = _ScannedMaps(pid, lambda m: m.scannable() & m.writable())
        self.keys = page_hash.page_keys(procfs.PAGE_SIZE)
        self._buffer = np.empty(MEM_BLOCK_PAGES * procfs.PAGE_SIZE // 8, dtype=np.uint64)
        self._vpns = np.empty(0, np.uint64)  # sorted pages with a known hash
        self._hashes = np.empty(0, np.uint64)
        self.unreadable_pages = 0

    def start(self) -> MapsTable:
        maps, self._vpns, self._hashes, _, _ = self._scan()
        return maps

    def sample(self) -> Sample:
        maps, vpns, hashes, fresh_clean, n_resident = self._scan()
        known, previous = _lookup(self._vpns, self._hashes, vpns)
        changed = known & (previous != hashes)
        appeared = ~known & (hashes != page_hash.ZERO_PAGE_HASH) & ~fresh_clean
        dirty = vpns[changed | appeared]
        self._vpns, self._hashes = vpns, hashes
        return Sample(dirty, n_resident, maps)

    def _open_mem(self) -> None:
        try:
            self.mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            procfs.raise_for(exc, self.pid, "the memory")

    def _scan(self) -> tuple[MapsTable, np.ndarray, np.ndarray, np.ndarray, int]:
        """Hashes every resident page of the writable regions.

        Returns (maps, vpns, hashes, fresh_clean, n_resident): `vpns` sorted; swapped-out pages
        keep the hash they had when last seen; `fresh_clean` marks private file pages that are
        still the file's own page (bit 61 in a private mapping), which cannot have been written.
        """
        maps, scan = self.maps.read()
        private = np.array([p[3] == "p" for p in scan.perms], dtype=bool)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        n_resident = 0
        # Reopened every scan: fds opened before an exec would go on reading the old memory.
        self._open_mem()
        try:
            with Pagemap(self.pid) as pagemap:
                for batch in procfs.iter_batches(pagemap, scan):
                    b6, b7 = procfs.flag_bytes(batch.entries)
                    n_resident += int(np.count_nonzero(b7 >= procfs.B7_SWAPPED))
                    present_idx = np.flatnonzero(b7 >= procfs.B7_PRESENT)
                    vpns = batch.vpns(present_idx)
                    hashes, readable = self._hash_pages(vpns)
                    file_page = (b7[present_idx] & procfs.B7_FILE) != 0
                    fresh = file_page & private[batch.regions_of(present_idx)]
                    parts.append((vpns[readable], hashes[readable], fresh[readable]))
                    swapped_idx = np.flatnonzero((b7 & procfs.B7_SWAPPED) != 0)
                    if swapped_idx.size:  # cannot change while swapped out: keep the old hash
                        found, previous = _lookup(self._vpns, self._hashes, batch.vpns(swapped_idx))
                        kept = batch.vpns(swapped_idx)[found]
                        parts.append((kept, previous[found], np.zeros(kept.size, dtype=bool)))
        finally:
            os.close(self.mem_fd)
            self.mem_fd = -1
        if not parts:
            empty = np.empty(0, np.uint64)
            return maps, empty, empty, np.empty(0, dtype=bool), n_resident
        vpns = np.concatenate([p[0] for p in parts])
        order = np.argsort(vpns, kind="stable")
        return (maps, vpns[order], np.concatenate([p[1] for p in parts])[order],
                np.concatenate([p[2] for p in parts])[order], n_resident)

    def _hash_pages(self, vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reads runs of consecutive pages and hashes them; also says which pages were readable."""
        hashes = np.zeros(vpns.size, dtype=np.uint64)
        readable = np.ones(vpns.size, dtype=bool)
        if vpns.size == 0:
            return hashes, readable
        breaks = np.flatnonzero(np.diff(vpns) != 1) + 1
        run_starts = np.concatenate(([0], breaks)).tolist()
        run_ends = np.concatenate((breaks, [vpns.size])).tolist()
        page_size = procfs.PAGE_SIZE
        words_per_page = page_size // 8
        for a, b in zip(run_starts, run_ends):
            first_page = int(vpns[a])
            for k in range(a, b, MEM_BLOCK_PAGES):
                n = min(MEM_BLOCK_PAGES, b - k)
                view = self._buffer[: n * words_per_page]
                if self._read_mem((first_page + (k - a)) * page_size, view):
                    hashes[k:k + n] = page_hash.hash_pages(view, self.keys)
                else:
                    readable[k:k + n] = False
                    self.unreadable_pages += n
        return hashes, readable

    def _read_mem(self, address: int, out: np.ndarray) -> bool:
        raw = memoryview(out).cast("B")
        done = 0
        while done < len(raw):
            try:
                got = os.preadv(self.mem_fd, [raw[done:]], address + done)
            except OSError as exc:
                if exc.errno == errno.EIO:  # an unreadable region (device memory, guard pages)
                    return False
                procfs.raise_for(exc, self.pid, "the memory")
            if got == 0:
                raise ProcessGone(self.pid)
            done += got
        return True


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, whether it is in sorted `keys`, and its value there (0 where absent)."""
    if keys.size == 0:
        return np.zeros(query.size, dtype=bool), np.zeros(query.size, dtype=values.dtype)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    found = keys[pos] == query
    return found, np.where(found, values[pos], 0).astype(values.dtype)


@dataclass(frozen=True)
class BackendChoice:
    """The backend `calm record` will use: its name in the trace, how it reads, and a factory."""

    name: str  # "soft-dirty" or "hash", the trace's `backend` attribute
    method: str  # "pagemap-scan", "pagemap-read" or "page-hash", the trace's `backend_method`

    def __call__(self, pid: int) -> SoftDirtyBackend | HashBackend:
        if self.name == "hash":
            return HashBackend(pid)
        return SoftDirtyBackend(pid, use_scan=self.method == "pagemap-scan")


def choose_backend(requested: str) -> tuple[BackendChoice, str]:
    """Resolves --backend to a backend and a sentence saying why, or refuses an unsupported one."""
    if requested not in ("auto", "soft-dirty", "hash"):
        raise CalmError(f"unknown backend {requested!r} (choose auto, soft-dirty or hash)")
    if requested == "hash":
        return BackendChoice("hash", "page-hash"), "hash backend (requested)"
    supported, reason = soft_dirty_supported()
    if requested == "soft-dirty" and not supported:
        raise CalmError(f"soft-dirty backend unavailable: {reason}; use --backend hash")
    if not supported:
        return BackendChoice("hash", "page-hash"), f"hash backend: soft-dirty unavailable, {reason}"
    scan, scan_reason = scan_supported()
    method = "pagemap-scan" if scan else "pagemap-read"
    how = "reading dirty ranges with PAGEMAP_SCAN" if scan else f"reading the full pagemap ({scan_reason})"
    origin = "requested; kernel supports it" if requested == "soft-dirty" else "kernel supports it"
    return BackendChoice("soft-dirty", method), f"soft-dirty backend ({origin}), {how}"
