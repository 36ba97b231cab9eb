"""A service is one memory, with soft-dirty (run inside scripts/calm-vm guests): the ground-truth
workload's service mode recorded with the soft-dirty backend, checked page by page against its write
log (tests/service_helpers.py), like the host's hash-backend test. Soft-dirty is per page-table
entry, so a shared page written by two workers in one sample is in both their segments: the service
view must still count it once, and each worker is credited with the shared pages it wrote.

Periods are incommensurate (0.67 s vs 0.5 s) and longer than the host test's: the guest runs under
TCG emulation, several times slower.
"""

from __future__ import annotations

import pytest

from tests.service_helpers import check_service, record_service

pytestmark = [pytest.mark.kernel, pytest.mark.newest_kernel]  # see tests/test_kernel_vm.py


def test_soft_dirty_counts_each_shared_page_once(tmp_path):
    out, truth = record_service(tmp_path, backend="soft-dirty", interval=0.5, work_interval=0.67, samples=40)
    check_service(out, truth, tmp_path, backend="soft-dirty", min_compared=8)
