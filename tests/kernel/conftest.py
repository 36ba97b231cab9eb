"""In-guest kernel tests: they need a kernel with soft-dirty, which the host lacks.

On the host these tests skip (tests/test_kernel_vm.py runs them inside qemu guests via
scripts/calm-vm). Inside a calm-vm guest (CALM_VM_GUEST=1) a missing soft-dirty is a failure, not a
skip: the guest kernels are chosen because they have it.
"""

from __future__ import annotations

import os

import pytest

from calm.collector.backends import soft_dirty_supported

IN_GUEST = os.environ.get("CALM_VM_GUEST") == "1"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode() -> str:
    """The active transparent-hugepage mode ("always", "madvise" or "never")."""
    with open(THP_ENABLED) as f:
        return f.read().split("[", 1)[1].split("]", 1)[0]


def set_thp_mode(mode: str) -> None:
    with open(THP_ENABLED, "w") as f:
        f.write(mode)


@pytest.fixture(autouse=True, scope="session")
def _thp_madvise_in_guest():
    """Debian guest kernels default to THP "always" (the host here uses "madvise"). With THP, soft-dirty
    works per 2 MiB huge page: one write marks 512 pages dirty, so a per-page ground truth cannot
    match. The guest runs the tests with "madvise", like the host; test_thp_* covers "always"."""
    if not IN_GUEST or not os.path.exists(THP_ENABLED):
        yield
        return
    before = thp_mode()
    set_thp_mode("madvise")
    yield
    set_thp_mode(before)


@pytest.fixture(autouse=True, scope="session")
def _soft_dirty_kernel() -> None:
    supported, reason = soft_dirty_supported()
    if supported:
        return
    if IN_GUEST:
        pytest.fail(f"calm-vm guest kernel {os.uname().release} lacks soft-dirty: {reason}")
    pytest.skip(f"needs a soft-dirty kernel ({reason}); tests/test_kernel_vm.py runs these in qemu")
