"""PAGEMAP_SCAN (collector/pagemap_scan.py) against full pagemap reads, on the guest kernels:
6.12 supports it with PAGE_IS_SOFT_DIRTY and must give the same dirty sets; 6.1 must be refused."""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import time

import numpy as np
import pytest

from calm.collector import procfs
from calm.collector.backends import SoftDirtyBackend
from calm.collector.pagemap_scan import PagemapScanner, scan_soft_dirty, scan_supported
from tests.collector_helpers import start_workload, stop

pytestmark = pytest.mark.kernel

KERNEL = tuple(int(x) for x in os.uname().release.split("-")[0].split("+")[0].split(".")[:2])
needs_scan = pytest.mark.skipif(KERNEL < (6, 8), reason=f"PAGEMAP_SCAN soft-dirty needs >= 6.8, guest is {KERNEL}")


def test_probe_matches_kernel_version():
    supported, reason = scan_supported()
    assert supported == (KERNEL >= (6, 8)), reason


@needs_scan
@pytest.mark.parametrize("vec_len", [1, 7, 511, 512, 600, 4096])
def test_scan_reports_exactly_the_written_pages(vec_len):
    pages = 4096
    buf = mmap.mmap(-1, (pages + 2) * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    # PROT_NONE guard pages: an anonymous mapping merged into this VMA later (numpy temporaries are
    # mmapped) would make the whole VMA soft-dirty, as the kernel documents for new/expanded VMAs
    libc = ctypes.CDLL(None, use_errno=True)
    for guard in (address, address + (pages + 1) * mmap.PAGESIZE):
        assert libc.mprotect(ctypes.c_void_p(guard), mmap.PAGESIZE, 0) == 0
    address += mmap.PAGESIZE
    view = np.frombuffer(buf, dtype=np.uint8)[mmap.PAGESIZE:(pages + 1) * mmap.PAGESIZE]
    view[:: mmap.PAGESIZE] = 1  # all resident
    with open("/proc/self/clear_refs", "wb", buffering=0) as clear_refs:
        clear_refs.write(b"4")
    written = np.unique(np.random.default_rng(3).integers(0, pages, 300))
    view[written * mmap.PAGESIZE] = 2  # runs of neighbours and isolated pages
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        result = PagemapScanner(fd, vec_len=vec_len).soft_dirty(
            np.array([address]), np.array([address + pages * mmap.PAGESIZE]))
        full = np.frombuffer(os.pread(fd, pages * 8, (address >> procfs.PAGE_SHIFT) * 8), np.uint64)
    finally:
        os.close(fd)
    expected = (address >> procfs.PAGE_SHIFT) + written.astype(np.uint64)
    full_dirty = (address >> procfs.PAGE_SHIFT) + np.flatnonzero(full & procfs.PM_SOFT_DIRTY).astype(np.uint64)
    assert np.array_equal(result.dirty_vpns, full_dirty)
    assert np.array_equal(result.dirty_vpns, expected)
    assert result.n_resident == pages
    del view
    buf.close()


@needs_scan
@pytest.mark.parametrize("profile", ["uniform:0.01", "uniform:0.1", "hotcold:0.2:0.5:0.02"])
def test_scan_and_full_read_agree_on_the_workload(tmp_path, profile):
    """Same process, same frozen state: the target is stopped between the two reads."""
    workload, _ = start_workload(tmp_path, pages=8192, interval=0.2, profile=profile)
    try:
        backend = SoftDirtyBackend(workload.pid)
        backend.start()
        nonzero = 0
        for _ in range(5):
            time.sleep(0.5)
            os.kill(workload.pid, signal.SIGSTOP)
            try:
                _, scan_maps = backend.maps.read()
                with procfs.Pagemap(workload.pid) as pagemap:
                    fast = scan_soft_dirty(pagemap.fd, scan_maps.start, scan_maps.end, pid=workload.pid)
                full = backend.sample()  # full pagemap read, then clear
            finally:
                os.kill(workload.pid, signal.SIGCONT)
            assert np.array_equal(fast.dirty_vpns, full.dirty_vpns)
            assert fast.n_resident == full.n_resident
            nonzero += fast.n_dirty > 0
        assert nonzero >= 4
    finally:
        stop(workload)
