"""QEMU's predictor method as scripts/calm_migration/predictor.py states it (predict_migration.py's
MemoryModel and predict_migration_time), on cases small enough to work out by hand, and the
zero-page sample on real memory."""

from __future__ import annotations

import math
import mmap
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from calm_migration import predictor  # noqa: E402

PAGE = predictor.PAGE_SIZE + predictor.HEADER_BYTES  # bytes of one normal page on the wire


def test_curve_extends_left_on_the_first_slope_and_saturates_on_the_last():
    curve = predictor.build_curve([(1, 1000), (2, 1500)], total_pages=10000, zero_pages=2000)
    # left: slope 0.5 page/ms through (1000 ms, 1000) meets t=0 at 500
    assert curve(0) == 500
    assert curve(1500) == pytest.approx(1250)
    # right: same slope until the 8000 non-zero pages, at (8000 - 500) / 0.5 = 15000 ms
    assert curve(15000) == pytest.approx(8000)
    assert curve(60000) == pytest.approx(8000)


def test_curve_clamps_a_negative_left_offset_at_zero():
    curve = predictor.build_curve([(1, 100), (2, 1100)], total_pages=10000, zero_pages=0)
    assert curve(0) == 0
    assert curve(500) == pytest.approx(50)  # on the line from (0, 0) to (1000 ms, 100)
    assert curve(1000) == 100


def test_points_from_dirty_rates_are_pages():
    assert predictor.dirty_points([(2.0, 3)]) == [(2.0, 3 * 2 * 256)]


def test_passes_until_one_fits_the_downtime_limit():
    curve = predictor.build_curve([(1, 100), (2, 100)], total_pages=1000, zero_pages=0)
    bandwidth = 1000 * PAGE  # 1000 pages per second
    p = predictor.predict(curve, 1000, 0, bandwidth, downtime_ms=100, deadline_s=60)
    # pass 1: 1000 pages in 1 s; pass 2: the 100 pages dirtied meanwhile, 100 ms <= the limit
    assert p.converges and p.passes == 2 and p.syncs == 3
    assert p.total_time_s == pytest.approx(1.1)
    assert p.downtime_s == pytest.approx(0.1)
    assert p.bytes == pytest.approx(1100 * PAGE)


def test_zero_pages_cost_a_header_in_the_first_pass_only():
    curve = predictor.build_curve([(1, 10), (2, 10)], total_pages=1000, zero_pages=500)
    p = predictor.predict(curve, 1000, 500, bandwidth_bytes_s=1e9, downtime_ms=1000, deadline_s=60)
    assert p.passes == 1
    assert p.bytes == pytest.approx(500 * PAGE + 500 * predictor.HEADER_BYTES)


def test_a_dirty_rate_above_the_bandwidth_does_not_converge():
    curve = predictor.build_curve([(1, 100), (2, 100)], total_pages=1000, zero_pages=0)
    p = predictor.predict(curve, 1000, 0, 1000 * PAGE, downtime_ms=50, deadline_s=5)
    assert not p.converges and math.isnan(p.downtime_s)
    assert p.total_time_s > 5


def test_zero_fraction_counts_untouched_and_zeroed_pages(tmp_path):
    pages = 64
    fd = os.memfd_create("calm-zero-sample")
    os.ftruncate(fd, pages * mmap.PAGESIZE)
    buf = mmap.mmap(fd, pages * mmap.PAGESIZE, flags=mmap.MAP_SHARED)
    import ctypes

    start = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    for i in range(16):  # 16 pages of data, 8 pages written with zeros, 40 never touched
        buf[i * mmap.PAGESIZE] = 7
    for i in range(16, 24):
        buf[i * mmap.PAGESIZE] = 0
    fraction = predictor.sample_zero_fraction(os.getpid(), start, pages * mmap.PAGESIZE, samples=pages)
    assert fraction == pytest.approx(48 / 64)
    del start
    buf.close()
    os.close(fd)
