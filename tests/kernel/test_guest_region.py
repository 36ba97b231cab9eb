"""`calm record --region` with the soft-dirty backend on a real soft-dirty kernel: a memfd shared
mapping (how QEMU backs guest RAM with memory-backend-memfd) is tracked page by page, and only
the matching mapping is read. Runs inside scripts/calm-vm guests (tests/test_kernel_vm.py)."""

from __future__ import annotations

import pytest

from tests import region_target
from tests.test_record_region import _dirty_pages, _record, target  # noqa: F401  (fixture)

pytestmark = pytest.mark.kernel


def test_region_of_a_memfd_with_soft_dirty(tmp_path, target):  # noqa: F811
    proc, where = target
    out = _record(tmp_path, proc.pid, "memfd:" + region_target.MEMFD_NAME)
    dirty, trace = _dirty_pages(out)
    with trace:
        assert trace.info.backend == "soft-dirty"
        first = where["memfd_start"] // where["page"]
        assert dirty.tolist() == [first + i for i in region_target.HOT_PAGES]
        residency = trace.residency()
        assert residency is not None and int(residency["pages"].sum()) == region_target.MEMFD_PAGES
