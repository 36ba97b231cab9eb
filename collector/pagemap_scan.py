"""The PAGEMAP_SCAN fast path: ask the kernel for soft-dirty page *ranges* instead of reading
8 bytes of pagemap per page.

Why: a full pagemap read costs 8 bytes of copy plus a page-table walk per mapped page, every sample,
however few pages were written. Linux 6.7 added the PAGEMAP_SCAN ioctl on /proc/PID/pagemap, and 6.8
its PAGE_IS_SOFT_DIRTY category: the kernel walks the page tables and returns only the matching
ranges, merged, so the cost follows the number of dirty ranges rather than the mapped size.

Layout from include/uapi/linux/fs.h (Linux >= 6.8); see also
Documentation/admin-guide/mm/pagemap.rst and ioctl_pagemap_scan(2):

    struct page_region { __u64 start, end, categories; };           // [start, end) in bytes
    struct pm_scan_arg { __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages,
                         category_inverted, category_mask, category_anyof_mask, return_mask; };
    #define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

A page matches when (categories ^ inverted) has every bit of category_mask and, if anyof is set,
at least one bit of category_anyof_mask; matching pages are reported in regions merged by their
(categories & return_mask). When `vec` fills up, the kernel stops and sets walk_end to where it
stopped; we resume from there.

Semantics match the full-read soft-dirty backend: a page is dirty when it is soft-dirty AND present
or swapped (a VMA created since the last clear reports soft-dirty on every page, resident or not,
in both interfaces; requiring residency drops the never-touched ones in both).

API (for the soft-dirty backend):
    supported, reason = scan_supported()                 # probe once, like CRIU's kerndat
    result = scan_soft_dirty(pagemap_fd, starts, ends)   # starts/ends: byte addresses (MapsTable)
    result.dirty_vpns (sorted uint64), result.n_resident, result.dirty_start_vpn/dirty_end_vpn
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
from dataclasses import dataclass

import numpy as np

from calm.collector.procfs import PAGE_SHIFT, ProcessGone, raise_for
from calm.collector.ranges import expand_ranges, merge_ranges

# PAGE_IS_* categories (bit masks), include/uapi/linux/fs.h
PAGE_IS_WPALLOWED = 1 << 0
PAGE_IS_WRITTEN = 1 << 1
PAGE_IS_FILE = 1 << 2
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5
PAGE_IS_HUGE = 1 << 6
PAGE_IS_SOFT_DIRTY = 1 << 7


class PmScanArg(ctypes.Structure):
    """struct pm_scan_arg (all __u64, no padding)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


def _iowr(type_char: str, number: int, size: int) -> int:
    """_IOWR from include/uapi/asm-generic/ioctl.h (x86 and arm64 share this encoding)."""
    return (3 << 30) | (size << 16) | (ord(type_char) << 8) | number


PAGEMAP_SCAN = _iowr("f", 16, ctypes.sizeof(PmScanArg))
REGION_FIELDS = 3  # struct page_region: start, end, categories
DEFAULT_VEC_LEN = 4096  # regions per ioctl call (96 KiB buffer); more resume via walk_end


class ScanUnsupported(Exception):
    """The kernel has no PAGEMAP_SCAN, or no PAGE_IS_SOFT_DIRTY category in it."""


@dataclass
class ScanResult:
    """Soft-dirty resident pages of the scanned ranges, and how many pages were resident."""

    dirty_start_vpn: np.ndarray  # uint64, first page of each dirty range, ascending
    dirty_end_vpn: np.ndarray  # uint64, page after the last of each range
    n_resident: int  # pages present or swapped in the scanned ranges

    @property
    def n_dirty(self) -> int:
        return int((self.dirty_end_vpn - self.dirty_start_vpn).sum())

    @property
    def dirty_vpns(self) -> np.ndarray:
        """Every dirty page number, sorted uint64 (vectorised expansion of the ranges)."""
        return expand_ranges(self.dirty_start_vpn, self.dirty_end_vpn)


class PagemapScanner:
    """Runs PAGEMAP_SCAN on one open pagemap fd, reusing its argument and output buffers."""

    def __init__(self, fd: int, pid: int | None = None, vec_len: int = DEFAULT_VEC_LEN) -> None:
        if vec_len < 1:
            raise ValueError("vec_len must be >= 1")
        self.fd = fd
        self.pid = os.getpid() if pid is None else pid  # for error messages
        self.vec = np.zeros((vec_len, REGION_FIELDS), dtype=np.uint64)
        self.arg = PmScanArg()

    def regions(self, start: int, end: int, category_mask: int, anyof_mask: int,
                return_mask: int, inverted: int = 0) -> np.ndarray:
        """All matching regions of [start, end) as an (n, 3) uint64 array (start, end, categories),
        resuming at walk_end whenever the output vector fills up."""
        parts: list[np.ndarray] = []
        position = start
        while position < end:
            count, walk_end = self._ioctl(position, end, category_mask, anyof_mask, return_mask, inverted)
            if count:
                parts.append(self.vec[:count].copy())
            # Resume only when the vector filled up. Linux 6.12 was seen returning every region
            # (count < vec_len) with walk_end short of `end` when vec_len exceeds its internal
            # 512-region buffer; resuming there would report regions twice.
            if count < self.vec.shape[0] or walk_end >= end:
                break
            resume = max(walk_end, int(self.vec[count - 1, 1]))
            if resume <= position:
                raise OSError(errno.EIO, f"PAGEMAP_SCAN made no progress at {position:#x}")
            position = resume
        if not parts:
            return np.empty((0, REGION_FIELDS), dtype=np.uint64)
        return np.concatenate(parts)

    def _ioctl(self, start: int, end: int, category_mask: int, anyof_mask: int,
               return_mask: int, inverted: int) -> tuple[int, int]:
        arg = self.arg
        arg.size = ctypes.sizeof(PmScanArg)
        arg.flags = 0
        arg.start, arg.end, arg.walk_end = start, end, 0
        arg.vec, arg.vec_len = self.vec.ctypes.data, self.vec.shape[0]
        arg.max_pages = 0
        arg.category_inverted, arg.category_mask = inverted, category_mask
        arg.category_anyof_mask, arg.return_mask = anyof_mask, return_mask
        try:
            count = fcntl.ioctl(self.fd, PAGEMAP_SCAN, arg, True)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOTTY):
                raise ScanUnsupported(f"PAGEMAP_SCAN refused: {exc.strerror}") from exc
            raise_for(exc, self.pid, "the pagemap")
            raise
        return count, int(arg.walk_end)

    def soft_dirty(self, starts: np.ndarray, ends: np.ndarray) -> ScanResult:
        """Soft-dirty resident pages of the byte ranges [starts_i, ends_i) (e.g. a MapsTable).

        One pass: every resident page is matched (anyof PRESENT|SWAPPED) and regions are split by
        the SOFT_DIRTY category only, so the same call also counts resident pages.
        """
        lo, hi = merge_ranges(np.asarray(starts, dtype=np.uint64), np.asarray(ends, dtype=np.uint64))
        found = [self.regions(int(a), int(b), 0, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, PAGE_IS_SOFT_DIRTY)
                 for a, b in zip(lo.tolist(), hi.tolist())]
        table = np.concatenate(found) if found else np.empty((0, REGION_FIELDS), dtype=np.uint64)
        shift = np.uint64(PAGE_SHIFT)
        first, last = table[:, 0] >> shift, table[:, 1] >> shift
        n_resident = int((last - first).sum())
        dirty = (table[:, 2] & np.uint64(PAGE_IS_SOFT_DIRTY)) != 0
        return ScanResult(first[dirty], last[dirty], n_resident)


def scan_soft_dirty(pagemap_fd: int, starts: np.ndarray, ends: np.ndarray, pid: int | None = None,
                    vec_len: int = DEFAULT_VEC_LEN) -> ScanResult:
    """Soft-dirty resident pages of [starts_i, ends_i) (bytes) via PAGEMAP_SCAN on an open
    /proc/PID/pagemap fd. Raises ScanUnsupported on kernels without it, ProcessGone if the
    target exited."""
    return PagemapScanner(pagemap_fd, pid, vec_len).soft_dirty(starts, ends)


def scan_supported() -> tuple[bool, str]:
    """Probe as CRIU does: a PAGEMAP_SCAN with PAGE_IS_SOFT_DIRTY in the masks on our own pagemap;
    EINVAL (unknown category or ioctl) or ENOTTY (no ioctl at all) mean unsupported.

    Then check that it works: a kernel without CONFIG_MEM_SOFT_DIRTY (6.18 here) accepts the
    category but never reports it, so clear our own bits, write a page, and require the scan to
    report exactly that page.
    """
    page = mmap.mmap(-1, 2 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        page[0] = page[mmap.PAGESIZE] = 1  # both resident
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            scanner = PagemapScanner(fd, vec_len=4)
            scanner.regions(address, address + mmap.PAGESIZE, PAGE_IS_SOFT_DIRTY,
                            PAGE_IS_PRESENT | PAGE_IS_SWAPPED, PAGE_IS_SOFT_DIRTY)
            with open("/proc/self/clear_refs", "wb", buffering=0) as clear_refs:
                clear_refs.write(b"4")
            page[mmap.PAGESIZE] = 2
            found = scanner.soft_dirty(np.array([address]), np.array([address + 2 * mmap.PAGESIZE]))
        except ScanUnsupported as exc:
            return False, f"{exc} (needs Linux >= 6.8 with CONFIG_MEM_SOFT_DIRTY)"
        except (OSError, ProcessGone) as exc:
            return False, f"PAGEMAP_SCAN probe failed: {exc}"
        finally:
            os.close(fd)
        written = [(address >> PAGE_SHIFT) + 1]
        if found.dirty_vpns.tolist() != written:
            return False, ("PAGEMAP_SCAN accepts PAGE_IS_SOFT_DIRTY but did not report the written "
                           "page (kernel built without CONFIG_MEM_SOFT_DIRTY?)")
        return True, "PAGEMAP_SCAN with PAGE_IS_SOFT_DIRTY"
    finally:
        page.close()
