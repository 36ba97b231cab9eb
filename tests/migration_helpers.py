"""What the real-migration tests need before they boot a guest (scripts/calm_migration's harness)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from tests.collector_helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))

from calm_migration import MigrationError  # noqa: E402
from calm_migration.qemu_binary import Qemu, find  # noqa: E402
from calm_vm.initramfs import BUSYBOX  # noqa: E402


def unavailable(reason: str, what: str) -> None:
    """Skips with the reason, except under CI=true, where it fails: a skip there would hide that
    the real migrations never ran."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} cannot run in CI: {reason}")
    pytest.skip(reason)


def require_migration_qemu(what: str) -> Qemu:
    """qemu, a C compiler, busybox and a QEMU >= 9.0 (the harness's QEMU), or skip/fail."""
    for tool in ("qemu-system-x86_64", "cc"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} not installed (run scripts/install-vm-deps)", what)
    if not BUSYBOX.exists():
        unavailable(f"{BUSYBOX} missing (run scripts/install-vm-deps)", what)
    try:
        return find(fetch=False)
    except MigrationError as exc:
        unavailable(str(exc), what)
        raise
