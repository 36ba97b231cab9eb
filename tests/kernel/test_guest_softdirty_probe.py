"""Smoke test of the guest kernel itself, independent of the collector: mmap pages, clear
soft-dirty with clear_refs 4, write one page, and read bit 55 of /proc/self/pagemap."""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

import pytest

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
