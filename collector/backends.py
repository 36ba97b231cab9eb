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
from dataclasses import dataclass

import numpy as np

from calm.errors import CalmError
from collector import page_hash, procfs
from collector.procfs import MapsTable, Pagemap, ProcessGone

# Pagemap is read in blocks of this many entries (8 MiB) so huge reserved regions stay cheap.
PAGEMAP_BLOCK = 1 << 20
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


def _region_pages(maps: MapsTable) -> tuple[np.ndarray, np.ndarray]:
    shift = np.uint64(procfs.PAGE_SHIFT)
    return (maps.start >> shift).astype(np.int64), (maps.end >> shift).astype(np.int64)


class SoftDirtyBackend:
    """Dirty pages from the kernel's soft-dirty bits (see module docstring)."""

    name = "soft-dirty"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Pagemap(pid).close()  # fail now, with a clear reason, if we may not read it

    def start(self) -> MapsTable:
        maps = procfs.read_maps(self.pid)
        procfs.clear_soft_dirty(self.pid)
        return maps

    def sample(self) -> Sample:
        maps = procfs.read_maps(self.pid)
        scan = maps.select(maps.scannable())
        dirty: list[np.ndarray] = []
        n_resident = 0
        with Pagemap(self.pid) as pagemap:
            for lo, hi in zip(*(a.tolist() for a in _region_pages(scan))):
                for block_lo in range(lo, hi, PAGEMAP_BLOCK):
                    block_hi = min(hi, block_lo + PAGEMAP_BLOCK)
                    entries = pagemap.read(block_lo, block_hi)
                    n_resident += int(np.count_nonzero(procfs.resident_mask(entries)))
                    idx = np.flatnonzero(procfs.soft_dirty_mask(entries))
                    if idx.size:
                        dirty.append(idx.astype(np.uint64) + np.uint64(block_lo))
            procfs.clear_soft_dirty(self.pid)
        vpns = np.concatenate(dirty) if dirty else np.empty(0, np.uint64)
        return Sample(vpns, n_resident, maps)


class HashBackend:
    """Dirty pages from changes of per-page content hashes (see module docstring)."""

    name = "hash"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pagemap = Pagemap(pid)  # checks access now; reopened for every scan (exec)
        self.pagemap.close()
        self.mem_fd = -1
        self._open_mem()
        os.close(self.mem_fd)
        self.keys = page_hash.page_keys(procfs.PAGE_SIZE)
        self._buffer = np.empty(MEM_BLOCK_PAGES * procfs.PAGE_SIZE // 8, dtype=np.uint64)
        self._vpns = np.empty(0, np.uint64)  # sorted pages with a known hash
        self._hashes = np.empty(0, np.uint64)
        self.unreadable_regions = 0

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

    def _scan(self) -> tuple[MapsTable, np.ndarray, np.ndarray, np.ndarray, int]:
        """Hashes every resident page of the writable regions.

        Returns (maps, vpns, hashes, fresh_clean, n_resident): `vpns` sorted; swapped-out pages
        keep the hash they had when last seen; `fresh_clean` marks private file pages that are
        still the file's own page (bit 61 in a private mapping), which cannot have been written.
        """
        maps = procfs.read_maps(self.pid)
        self.pagemap = Pagemap(self.pid)
        self._open_mem()
        try:
            return self._scan_regions(maps)
        finally:
            self.pagemap.close()
            os.close(self.mem_fd)
            self.mem_fd = -1

    def _open_mem(self) -> None:
        try:
            self.mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            procfs.raise_for(exc, self.pid, "the memory")

    def _scan_regions(self, maps: MapsTable) -> tuple[MapsTable, np.ndarray, np.ndarray, np.ndarray, int]:
        scan = maps.select(maps.scannable() & maps.writable())
        private = np.array([p[3] == "p" for p in scan.perms], dtype=bool)
        out_vpns: list[np.ndarray] = []
        out_hashes: list[np.ndarray] = []
        out_fresh: list[np.ndarray] = []
        n_resident = 0
        for region, (lo, hi) in enumerate(zip(*(a.tolist() for a in _region_pages(scan)))):
            for block_lo in range(lo, hi, PAGEMAP_BLOCK):
                block_hi = min(hi, block_lo + PAGEMAP_BLOCK)
                entries = self.pagemap.read(block_lo, block_hi)
                present = (entries & procfs.PM_PRESENT) != 0
                swapped = (entries & procfs.PM_SWAPPED) != 0
                n_resident += int(np.count_nonzero(present | swapped))
                present_idx = np.flatnonzero(present)
                file_page = (entries[present_idx] & procfs.PM_FILE_OR_SHARED_ANON) != 0
                hashes = self._hash_present(block_lo, present_idx)
                if hashes is None:
                    continue
                vpns = present_idx.astype(np.uint64) + np.uint64(block_lo)
                out_vpns.append(vpns)
                out_hashes.append(hashes)
                out_fresh.append(file_page & private[region])
                swapped_idx = np.flatnonzero(swapped)
                if swapped_idx.size:
                    kept = self._known_hashes(swapped_idx.astype(np.uint64) + np.uint64(block_lo))
                    out_vpns.append(kept[0])
                    out_hashes.append(kept[1])
                    out_fresh.append(np.zeros(kept[0].size, dtype=bool))
        if not out_vpns:
            empty = np.empty(0, np.uint64)
            return maps, empty, empty, np.empty(0, dtype=bool), n_resident
        vpns = np.concatenate(out_vpns)
        order = np.argsort(vpns, kind="stable")
        return (maps, vpns[order], np.concatenate(out_hashes)[order],
                np.concatenate(out_fresh)[order], n_resident)

    def _known_hashes(self, vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Previous hashes of swapped-out pages (they cannot change while swapped out)."""
        found, previous = _lookup(self._vpns, self._hashes, vpns)
        return vpns[found], previous[found]

    def _hash_present(self, block_lo: int, present_idx: np.ndarray) -> np.ndarray | None:
        """Reads runs of consecutive present pages and hashes them; None if unreadable."""
        hashes = np.empty(present_idx.size, dtype=np.uint64)
        if present_idx.size == 0:
            return hashes
        breaks = np.flatnonzero(np.diff(present_idx) != 1) + 1
        run_starts = np.concatenate(([0], breaks))
        run_ends = np.concatenate((breaks, [present_idx.size]))
        page_size = procfs.PAGE_SIZE
        words_per_page = page_size // 8
        for a, b in zip(run_starts.tolist(), run_ends.tolist()):
            first_page = block_lo + int(present_idx[a])
            for k in range(a, b, MEM_BLOCK_PAGES):
                n = min(MEM_BLOCK_PAGES, b - k)
                view = self._buffer[: n * words_per_page]
                if not self._read_mem((first_page + (k - a)) * page_size, view):
                    return None
                hashes[k:k + n] = page_hash.hash_pages(view, self.keys)
        return hashes

    def _read_mem(self, address: int, out: np.ndarray) -> bool:
        raw = memoryview(out).cast("B")
        done = 0
        while done < len(raw):
            try:
                got = os.preadv(self.mem_fd, [raw[done:]], address + done)
            except OSError as exc:
                if exc.errno == errno.EIO:  # an unreadable region (device memory, guard pages)
                    self.unreadable_regions += 1
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


BACKENDS = {"soft-dirty": SoftDirtyBackend, "hash": HashBackend}


def choose_backend(requested: str) -> tuple[type[SoftDirtyBackend] | type[HashBackend], str]:
    """Resolves --backend to a class and a sentence saying why, or refuses an unsupported one."""
    if requested not in ("auto", *BACKENDS):
        raise CalmError(f"unknown backend {requested!r} (choose auto, soft-dirty or hash)")
    if requested == "hash":
        return HashBackend, "hash backend (requested)"
    supported, reason = soft_dirty_supported()
    if requested == "soft-dirty":
        if not supported:
            raise CalmError(f"soft-dirty backend unavailable: {reason}; use --backend hash")
        return SoftDirtyBackend, "soft-dirty backend (requested; kernel supports it)"
    if supported:
        return SoftDirtyBackend, "soft-dirty backend (kernel supports it)"
    return HashBackend, f"hash backend: soft-dirty unavailable, {reason}"
