"""What the soft-dirty backend records about resident and zero pages (trace format minor 1), in a
soft-dirty guest kernel: present or swapped pages from the pagemap; with PAGEMAP_SCAN also the
pages that map the shared zero page. It cannot tell a page written full of zeros from data."""

from __future__ import annotations

import pytest

from calm.collector.pagemap_scan import scan_supported
from calm.trace.format import RESIDENCY_ABSENT, RESIDENCY_RESIDENT, RESIDENCY_ZERO
from calm.trace.reader import Trace
from tests.collector_helpers import calm, region_states, start_quarters, stop

pytestmark = pytest.mark.kernel


def test_soft_dirty_records_resident_pages_and_the_zero_page(tmp_path):
    proc, first = start_quarters(tmp_path, pages=2048)
    out = tmp_path / "q.h5"
    try:
        calm("record", "--backend", "soft-dirty", "--pid", str(proc.pid), "--interval", "0.25", "--duration", "1",
             "-q", "-o", str(out), check=True, timeout=120)
    finally:
        stop(proc)
    with Trace(out) as trace:
        states = region_states(trace.residency(), first, 2048)
    q = 512
    assert states[:q] == [RESIDENCY_RESIDENT] * q  # data
    assert states[q:2 * q] == [RESIDENCY_RESIDENT] * q  # written with zeros: looks like data
    only_read = RESIDENCY_ZERO if scan_supported()[0] else RESIDENCY_RESIDENT  # PAGE_IS_PFNZERO
    assert states[2 * q:3 * q] == [only_read] * q
    assert states[3 * q:] == [RESIDENCY_ABSENT] * q  # never touched
