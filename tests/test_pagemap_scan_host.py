"""PAGEMAP_SCAN plumbing that the host kernel can check for real (it has the ioctl, without
soft-dirty): struct layout, walk_end resume with a tiny output vector, range helpers, and the
support probe's verdict. The soft-dirty results themselves are tested in the guests (tests/kernel)."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess

import numpy as np
import pytest

from calm.collector.ranges import expand_ranges, merge_ranges
from calm.collector import pagemap_scan as ps
from calm.collector.backends import soft_dirty_supported


def _has_pagemap_scan() -> bool:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        ps.PagemapScanner(fd, vec_len=1).regions(0, 0x1000, ps.PAGE_IS_PRESENT, 0, ps.PAGE_IS_PRESENT)
        return True
    except ps.ScanUnsupported:
        return False
    finally:
        os.close(fd)


def test_ioctl_number_and_struct_size_match_linux_uapi() -> None:
    assert ctypes.sizeof(ps.PmScanArg) == 96
    assert ps.PAGEMAP_SCAN == 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg)


def test_expand_and_merge_ranges() -> None:
    start = np.array([3, 10, 20], dtype=np.uint64)
    end = np.array([5, 13, 20], dtype=np.uint64)
    assert expand_ranges(start, end).tolist() == [3, 4, 10, 11, 12]
    assert expand_ranges(start[:0], end[:0]).dtype == np.uint64
    lo, hi = merge_ranges(np.array([20, 0, 10, 5]), np.array([30, 5, 20, 8]))
    assert lo.tolist() == [0, 10] and hi.tolist() == [8, 30]
    lo, hi = merge_ranges(np.array([0, 9]), np.array([8, 12]))
    assert lo.tolist() == [0, 9] and hi.tolist() == [8, 12]


@pytest.mark.skipif(not _has_pagemap_scan(), reason="host kernel has no PAGEMAP_SCAN (< 6.7)")
def test_walk_end_resume_collects_every_region() -> None:
    """Every other page resident: 64 one-page regions, fetched 3 at a time through walk_end."""
    pages = 128
    buf = mmap.mmap(-1, pages * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    touched = np.arange(0, pages, 2)
    for page in touched.tolist():
        buf[page * mmap.PAGESIZE] = 1
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        for vec_len in (1, 3, 64, 4096):
            scanner = ps.PagemapScanner(fd, vec_len=vec_len)
            table = scanner.regions(address, address + pages * mmap.PAGESIZE,
                                    ps.PAGE_IS_PRESENT, 0, ps.PAGE_IS_PRESENT)
            first = (table[:, 0] - address) // mmap.PAGESIZE
            assert first.tolist() == touched.tolist(), vec_len
            assert np.all(table[:, 1] - table[:, 0] == mmap.PAGESIZE)
    finally:
        os.close(fd)
        buf.close()


@pytest.mark.skipif(not _has_pagemap_scan(), reason="host kernel has no PAGEMAP_SCAN (< 6.7)")
def test_unknown_category_is_reported_unsupported() -> None:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        with pytest.raises(ps.ScanUnsupported):
            ps.PagemapScanner(fd).regions(0, 0x1000, 1 << 40, 0, 0)
    finally:
        os.close(fd)


def test_scan_supported_agrees_with_soft_dirty_support() -> None:
    """No soft-dirty, no fast path: the probe must not claim PAGEMAP_SCAN soft-dirty support on a
    kernel that accepts the category but never sets it (the host here)."""
    supported, reason = ps.scan_supported()
    assert reason
    if not soft_dirty_supported()[0]:
        assert not supported, reason


@pytest.mark.skipif(not _has_pagemap_scan(), reason="host kernel has no PAGEMAP_SCAN (< 6.7)")
def test_exited_process_raises_process_gone() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    fd = os.open(f"/proc/{proc.pid}/pagemap", os.O_RDONLY)
    proc.kill()
    proc.wait()
    try:
        with pytest.raises(ps.ProcessGone):
            ps.scan_soft_dirty(fd, np.array([0x400000]), np.array([0x800000]), pid=proc.pid)
    finally:
        os.close(fd)
