"""The ways of telling which pages a process dirtied during an interval.

A backend is attached to one process (`attach`), establishes a baseline, and on each `sample()`
returns the sorted virtual page numbers written since the previous call plus the resident page
count, then re-arms itself for the next interval. Two backends:

- `SoftDirtyBackend` (primary): the kernel tracks writes. Read /proc/PID/pagemap, take pages with
  bit 55 set that are present or swapped, then write 4 to /proc/PID/clear_refs. Costs 8 bytes read
  per mapped virtual page. A write that lands between the read and the clear of the same process is
  lost (a window of microseconds to milliseconds, the same as CRIU's pre-dump). Needs a kernel with
  CONFIG_MEM_SOFT_DIRTY; `soft_dirty_supported()` checks it like CRIU does.
- `HashBackend` (portable fallback): read the process's writable resident memory with
  process_vm_readv and hash every page in the same pass (`page_reader`); a page is dirty when its
  hash changed. Shared pages are read once per round for the whole service (`shared_hash`). Limits:
  a write that leaves a page's bytes as they were (the same value written again) is invisible;
  cost grows with resident writable memory (it reads all of it every interval); a page that becomes
  resident during an interval counts as dirty when it holds anything but zeros, except a private
  file page that is still the file's own (not copied on write), which cannot have been written.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calm.core.errors import CalmError
from calm.collector import page_hash, present_pages, procfs, residency
from calm.collector.page_reader import PageReader
from calm.collector.pagemap_scan import scan_soft_dirty, scan_supported
from calm.collector.procfs import Pagemap
from calm.collector.shared_hash import SharedHashes, SharedView, lookup as _lookup
from calm.trace.maps import MapsTable


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

    def __init__(self, pid: int, use_scan: bool = False, regions: tuple[str, ...] = ()) -> None:
        self.pid = pid
        self.use_scan = use_scan  # PAGEMAP_SCAN (Linux >= 6.8): only the dirty ranges come back
        Pagemap(pid).close()  # fail now, with a clear reason, if we may not read it
        self.maps = _ScannedMaps(pid, lambda m: m.scannable() & m.matching(regions))
        self.pages_read = 0  # page-table entries the last sample read (PAGEMAP_SCAN: walked)

    def start(self) -> MapsTable:
        maps, scan = self.maps.read()
        self.start_residency = self._residency(scan)
        procfs.clear_soft_dirty(self.pid)
        return maps

    def _residency(self, scan: MapsTable) -> residency.Residency:
        """Resident pages at the baseline: present or swapped from the pagemap. With
        PAGEMAP_SCAN the kernel also marks pages that map the shared zero page (PAGE_IS_PFNZERO:
        read, never written); a page written full of zeros looks like any other."""
        with Pagemap(self.pid) as pagemap:
            if self.use_scan:
                from calm.collector.pagemap_scan import (PAGE_IS_PFNZERO, PAGE_IS_PRESENT, PAGE_IS_SWAPPED,
                                                         PagemapScanner)
                scanner = PagemapScanner(pagemap.fd, self.pid)
                found = [scanner.regions(int(a), int(b), 0, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, PAGE_IS_PFNZERO)
                         for a, b in zip(scan.start.tolist(), scan.end.tolist())]
                table = np.concatenate(found) if found else np.empty((0, 3), dtype=np.uint64)
                shift = np.uint64(procfs.PAGE_SHIFT)
                zero = (table[:, 2] & np.uint64(PAGE_IS_PFNZERO)) != 0
                state = np.where(zero, residency.RESIDENCY_ZERO, residency.RESIDENCY_RESIDENT)
                return residency.from_ranges(scan, table[:, 0] >> shift, table[:, 1] >> shift, state)
            parts = []
            for batch in procfs.iter_batches(pagemap, scan):
                _, b7 = procfs.flag_bytes(batch.entries)
                parts.append(batch.vpns(np.flatnonzero(b7 >= procfs.B7_SWAPPED)))
        vpns = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        return residency.from_pages(scan, vpns, np.zeros(vpns.size, dtype=bool))

    def sample(self) -> Sample:
        maps, scan = self.maps.read()
        dirty: list[np.ndarray] = []
        n_resident = 0
        # Reopened every sample: an fd opened before an exec would go on reading the old memory.
        with Pagemap(self.pid) as pagemap:
            if self.use_scan:
                found = scan_soft_dirty(pagemap.fd, scan.start, scan.end, self.pid)
                procfs.clear_soft_dirty(self.pid)
                self.pages_read = found.n_resident
                return Sample(found.dirty_vpns, found.n_resident, maps)
            self.pages_read = 0
            for batch in procfs.iter_batches(pagemap, scan):
                self.pages_read += batch.entries.size
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
    """Dirty pages from changes of per-page content hashes (see module docstring).

    Private writable pages are hashed here; pages of writable MAP_SHARED regions are handed to a
    `SharedHashes` shared by every process of the recording, which reads each shared page once per
    round whichever processes map it. Without one (a backend used on its own) it keeps its own.
    """

    name = "hash"

    def __init__(self, pid: int, shared: SharedHashes | None = None, regions: tuple[str, ...] = ()) -> None:
        self.pid = pid
        Pagemap(pid).close()  # fail now, with a clear reason, if we may not read it
        try:  # process_vm_readv needs the same access as /proc/PID/mem: ask now, for a clear error
            os.close(os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            procfs.raise_for(exc, pid, "the memory")
        self.maps = _ScannedMaps(pid, lambda m: m.scannable() & m.writable() & m.matching(regions))
        self.reader = PageReader(pid)
        self._own_shared = shared is None
        self.shared = SharedHashes() if shared is None else shared
        self._vpns = np.empty(0, np.uint64)  # sorted private pages with a known hash
        self._hashes = np.empty(0, np.uint64)
        self.pages_read = 0  # pages whose contents the last scan read (private ones)

    @property
    def unreadable_pages(self) -> int:
        return self.reader.unreadable_pages

    def start(self) -> MapsTable:
        resident: list[np.ndarray] = []
        maps, self._vpns, self._hashes, _, _, view = self._scan(resident)
        self.shared.baseline(view)
        # every present page was hashed: a zero hash is a page of zeros; swapped or unreadable
        # pages are resident with unknown content
        vpns = np.sort(np.concatenate(resident)) if resident else np.empty(0, np.uint64)
        known, hashes = _lookup(self._vpns, self._hashes, vpns)
        zero = known & (hashes == page_hash.ZERO_PAGE_HASH)
        shared_known, shared_hashes = self.shared.hashes_of(view)
        shared_zero = view.vpns[shared_known & (shared_hashes == page_hash.ZERO_PAGE_HASH)]
        zero[np.searchsorted(vpns, shared_zero)] = True
        self.start_residency = residency.from_pages(self._last_scan, vpns, zero)
        return maps

    def sample(self) -> Sample:
        maps, vpns, hashes, fresh_clean, n_resident, view = self._scan()
        if vpns.size == self._vpns.size and np.array_equal(vpns, self._vpns):  # the usual round:
            known, previous = np.ones(vpns.size, dtype=bool), self._hashes  # same pages, no search
        else:
            known, previous = _lookup(self._vpns, self._hashes, vpns)
        changed = known & (previous != hashes)
        appeared = ~known & (hashes != page_hash.ZERO_PAGE_HASH) & ~fresh_clean
        dirty = vpns[changed | appeared]
        self._vpns, self._hashes = vpns, hashes
        self.shared.add(view)
        if self._own_shared:  # on its own: the shared pages are this process's to report
            found = self.shared.finish_round().get(self.pid)
            if found is not None and found.size:
                dirty = np.union1d(dirty, found)
        return Sample(dirty, n_resident, maps)

    def _scan(self, resident: list[np.ndarray] | None = None) -> tuple[MapsTable, np.ndarray, np.ndarray,
                                                                        np.ndarray, int, SharedView]:
        """Hashes every resident private page of the writable regions; lists the shared ones.

        Returns (maps, vpns, hashes, fresh_clean, n_resident, shared view): `vpns` sorted; swapped-out
        pages keep the hash they had when last seen; `fresh_clean` marks private file pages that are
        still the file's own page (bit 61 in a private mapping), which cannot have been written.
        With `resident`, the pages present or swapped are appended to it as well.
        """
        maps, scan = self.maps.read()
        self._last_scan = scan
        shared_region = scan.shared()
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        shared_vpns: list[np.ndarray] = []
        n_resident = 0
        self.pages_read = 0
        with Pagemap(self.pid) as pagemap:
            for batch in procfs.iter_batches(pagemap, scan):
                pages = present_pages.classify(batch, shared_region, want_resident=resident is not None)
                n_resident += pages.n_resident
                if pages.resident is not None and resident is not None:
                    resident.append(pages.resident)
                if pages.shared.size:
                    shared_vpns.append(pages.shared)
                hashes, readable = self.reader.read_hash_runs(pages.run_vpn, pages.run_pages)
                self.pages_read += pages.private.size
                if readable.all():
                    parts.append((pages.private, hashes, pages.fresh))
                else:
                    parts.append((pages.private[readable], hashes[readable], pages.fresh[readable]))
                if pages.swapped.size:  # cannot change while swapped out: keep the old hash
                    found, previous = _lookup(self._vpns, self._hashes, pages.swapped)
                    kept = pages.swapped[found]
                    parts.append((kept, previous[found], np.zeros(kept.size, dtype=bool)))
        view = SharedView.of(self.reader, scan.select(shared_region),
                             np.concatenate(shared_vpns) if shared_vpns else np.empty(0, np.uint64))
        if not parts:
            empty = np.empty(0, np.uint64)
            return maps, empty, empty, np.empty(0, dtype=bool), n_resident, view
        if len(parts) == 1:  # one batch, nothing swapped: the usual round, sorted, no copies
            return (maps, *parts[0], n_resident, view)
        vpns, hashes, fresh = (np.concatenate([p[i] for p in parts]) for i in range(3))
        if not np.all(vpns[1:] > vpns[:-1]):  # swapped pages were appended
            order = np.argsort(vpns, kind="stable")
            vpns, hashes, fresh = vpns[order], hashes[order], fresh[order]
        return maps, vpns, hashes, fresh, n_resident, view


@dataclass(frozen=True)
class BackendChoice:
    """The backend `calm record` will use: its name in the trace, how it reads, and a factory."""

    name: str  # "soft-dirty" or "hash", the trace's `backend` attribute
    method: str  # "pagemap-scan", "pagemap-read" or "page-hash", the trace's `backend_method`
    regions: tuple[str, ...] = ()  # --region patterns: only mappings whose path matches are read

    def __call__(self, pid: int, shared: SharedHashes | None = None) -> SoftDirtyBackend | HashBackend:
        if self.name == "hash":
            return HashBackend(pid, shared, self.regions)
        return SoftDirtyBackend(pid, use_scan=self.method == "pagemap-scan", regions=self.regions)


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
