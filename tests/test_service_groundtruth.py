"""A service is one memory: the ground-truth workload's service mode (a master, forked workers, one
MAP_SHARED region, private pages per worker) recorded with the hash backend on the host, checked
page by page against its write log (tests/service_helpers.py). The soft-dirty twin runs in the
kernel VM (tests/kernel/test_guest_service.py).

Workload and collector periods are incommensurate (0.67 s vs 0.5 s) so write rounds drift across
sampling windows.
"""

from __future__ import annotations

import pytest

from tests.service_helpers import check_service, record_service

pytestmark = pytest.mark.slow


def test_hash_backend_counts_each_shared_page_once(tmp_path):
    out, truth = record_service(tmp_path, backend="hash", interval=0.5, work_interval=0.67, samples=40)
    check_service(out, truth, tmp_path, backend="hash", min_compared=8)
