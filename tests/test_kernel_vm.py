"""Boot each soft-dirty guest kernel under qemu (scripts/calm-vm) and run the in-guest kernel tests
(tests/kernel, marker `kernel`) there; the guest's pytest exit status decides this test.

Skips with the reason when qemu, busybox-static or a kernel cannot be had, except under CI=true,
where a skip would hide that the kernel tests never ran: there it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CALM_VM = REPO / "scripts" / "calm-vm"
sys.path.insert(0, str(REPO / "scripts"))

from calm_vm import VmError  # noqa: E402
from calm_vm.initramfs import BUSYBOX  # noqa: E402
from calm_vm.kernels import fetch  # noqa: E402

GUEST_TIMEOUT = 900  # seconds for one guest run (boot ~5 s under TCG; the tests take ~4-5 min)
JVM_GUEST_TIMEOUT = 1200  # the JVM test alone: ~100 s to index, 60 s of load, analysis (~5 min measured)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"kernel VM tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _kernel(series: str):
    """The cached kernel of `series`, or a skip (a failure under CI) saying what is missing."""
    if shutil.which("qemu-system-x86_64") is None:
        _unavailable("qemu-system-x86_64 not installed (run scripts/install-vm-deps)")
    if not BUSYBOX.exists():
        _unavailable(f"{BUSYBOX} missing (run scripts/install-vm-deps)")
    try:
        return fetch(series)
    except VmError as error:
        _unavailable(f"no {series} kernel: {error}")


@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_kernel_tests_pass_in_guest(series: str) -> None:
    kernel = _kernel(series)
    command = [sys.executable, str(CALM_VM), "--kernel", series, "--timeout", str(GUEST_TIMEOUT), "--",
               "python", "-m", "pytest", "-m", "kernel and not jvm", "tests/kernel", "-v", "-rs",
               "-p", "no:cacheprovider", "--color=no"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=GUEST_TIMEOUT + 60)
    output = proc.stdout + proc.stderr
    print(output)  # shown by pytest on failure, and with -s
    assert proc.returncode == 0, f"guest pytest on {kernel.release} exited {proc.returncode}:\n{output}"
    assert " passed" in proc.stdout, output


@pytest.mark.slow
def test_search_profile_in_guest() -> None:
    """The JVM search service profiled with soft-dirty (tests/kernel/test_guest_search.py) in a 6.12
    guest of its own: one kernel only, as it takes about 5 minutes under TCG (measured), and the
    backend code it exercises is the one the other kernel tests cover on both kernels."""
    _kernel("6.12")
    from calm_search import compile_service, installed

    if not installed():
        _unavailable("openjdk-17-jdk-headless or liblucene8-java not installed (run scripts/install-deps)")
    compile_service()  # on the host: the guest sees the host root (and this cache) read-only
    command = [sys.executable, str(CALM_VM), "--kernel", "6.12", "--timeout", str(JVM_GUEST_TIMEOUT), "--",
               "python", "-m", "pytest", "-m", "kernel and jvm", "tests/kernel", "-v", "-rs",
               "-p", "no:cacheprovider", "--color=no"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=JVM_GUEST_TIMEOUT + 60)
    output = proc.stdout + proc.stderr
    print(output)
    assert proc.returncode == 0, f"guest pytest exited {proc.returncode}:\n{output}"
    assert " 1 passed" in proc.stdout, output


def test_a_guest_that_dies_while_booting_is_booted_again_then_reported():
    """A kernel that cannot boot (no init: it panics before the harness's READY) is tried
    BOOT_ATTEMPTS times, each retry said on stderr, then one clear error line and exit 2. This
    is what rescues a TCG boot flake (CI saw the 6.12 kernel oops once while booting); a guest
    that dies after READY is not retried (its command may have had effects)."""
    _kernel("6.1")
    proc = subprocess.run([sys.executable, str(CALM_VM), "--kernel", "6.1", "--timeout", "120",
                           "--append", "rdinit=/no-such-init", "--", "true"],
                          cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [line for line in lines if "booting again" in line][-1].endswith("(3 of 3)")
    assert lines[-1].startswith("calm-vm: error: guest kernel died while booting")
    assert lines[-1].endswith("(3 boots tried)")
