"""In-guest kernel tests: they need a kernel with soft-dirty, which the host lacks.

On the host these tests skip (tests/test_kernel_vm.py runs them inside qemu guests via
scripts/calm-vm). Inside a calm-vm guest (CALM_VM_GUEST=1) a missing soft-dirty is a failure, not a
skip: the guest kernels are chosen because they have it.
"""

from __future__ import annotations

import os

import pytest

from collector.backends import soft_dirty_supported

IN_GUEST = os.environ.get("CALM_VM_GUEST") == "1"


@pytest.fixture(autouse=True, scope="session")
def _soft_dirty_kernel() -> None:
    supported, reason = soft_dirty_supported()
    if supported:
        return
    if IN_GUEST:
        pytest.fail(f"calm-vm guest kernel {os.uname().release} lacks soft-dirty: {reason}")
    pytest.skip(f"needs a soft-dirty kernel ({reason}); tests/test_kernel_vm.py runs these in qemu")
