"""Smoke test of the guest kernel itself, independent of the collector: mmap pages, clear
soft-dirty with clear_refs 4, write one page, and read bit 55 of /proc/self/pagemap."""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

import pytest
from conftest import THP_ENABLED, set_thp_mode, thp_mode

pytestmark = pytest.mark.kernel

SOFT_DIRTY = 1 << 55
PRESENT = 1 << 63
PAGES = 8


def _entries(address: int, pages: int) -> list[int]:
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        pagemap.seek(address // mmap.PAGESIZE * 8)
        data = pagemap.read(8 * pages)
    return list(struct.unpack(f"{pages}Q", data))


def _clear_refs() -> None:
    with open("/proc/self/clear_refs", "wb", buffering=0) as clear_refs:
        clear_refs.write(b"4")


def test_bit_55_follows_writes_after_clear_refs() -> None:
    buf = mmap.mmap(-1, PAGES * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    for page in range(PAGES):
        buf[page * mmap.PAGESIZE] = 1
    assert all(e & PRESENT for e in _entries(address, PAGES))
    assert all(e & SOFT_DIRTY for e in _entries(address, PAGES)), "fresh writes must be soft-dirty"

    _clear_refs()
    assert not any(e & SOFT_DIRTY for e in _entries(address, PAGES)), "clear_refs 4 must clear bit 55"

    written = {1, 6}
    for page in written:
        buf[page * mmap.PAGESIZE + 100] = 7
    dirty = {i for i, e in enumerate(_entries(address, PAGES)) if e & SOFT_DIRTY}
    assert dirty == written

    _clear_refs()
    _ = bytes(buf[: PAGES * mmap.PAGESIZE])  # reads must not set it
    assert not any(e & SOFT_DIRTY for e in _entries(address, PAGES))
    buf.close()


def test_kernel_has_soft_dirty_config() -> None:
    """The guest is one of the harness's Debian kernels (6.1 or 6.12), not the host's."""
    release = os.uname().release
    assert release.startswith(("6.1.", "6.12.")), release


HUGE = 2 << 20


@pytest.mark.skipif(not os.path.exists(THP_ENABLED), reason="kernel without transparent hugepages")
def test_thp_makes_soft_dirty_coarse() -> None:
    """A known limit, pinned down: on an anonymous transparent huge page, one 4 KiB write marks the
    whole 2 MiB (512 pages) soft-dirty. Recording a THP-backed service over-reports dirty pages."""
    before = thp_mode()
    set_thp_mode("always")
    try:
        buf = mmap.mmap(-1, 2 * HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        aligned = (base + HUGE - 1) // HUGE * HUGE  # a whole huge page inside the mapping
        offset = aligned - base
        buf[offset:offset + HUGE] = b"\1" * HUGE
        pages = HUGE // mmap.PAGESIZE
        _clear_refs()
        buf[offset + 3 * mmap.PAGESIZE] = 9
        dirty = sum(1 for e in _entries(aligned, pages) if e & SOFT_DIRTY)
        huge_kib = _anon_huge_kib(base)
        buf.close()
    finally:
        set_thp_mode(before)
    if huge_kib == 0:
        pytest.skip("the kernel gave no huge page to the mapping")
    assert dirty == pages


def _anon_huge_kib(address: int) -> int:
    """AnonHugePages of the mapping containing `address`, from /proc/self/smaps."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "AnonHugePages:":
                return int(line.split()[1])
    return 0
