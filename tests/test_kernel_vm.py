"""Boot each soft-dirty guest kernel under qemu (scripts/calm-vm) and run the in-guest kernel tests
(tests/kernel, marker `kernel`) there; the guest's pytest exit status decides this test.

Skips with the reason when qemu, busybox-static or a kernel cannot be had, except under CI=true,
where a skip would hide that the kernel tests never ran: there it fails instead.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CALM_VM = REPO / "scripts" / "calm-vm"
sys.path.insert(0, str(REPO / "scripts"))

from calm_vm import VmError  # noqa: E402
from calm_vm.initramfs import BUSYBOX  # noqa: E402
from calm_vm.kernels import fetch  # noqa: E402

GUEST_TIMEOUT = 900  # seconds for one guest run (boot ~5 s under TCG; the tests take ~4-5 min)
# What runs on each kernel. The collector's own tests (the soft-dirty bit, clear_refs, PAGEMAP_SCAN
# where the kernel has it, THP, residency, regions, children, exits) run on both: that is where the
# kernels differ. The service tests (marker newest_kernel: Apache, the shared-memory service) drive
# the same kernel interface through a whole service and take the longest under TCG, so they run on
# the newest kernel only (a CI trial with both cores busy took 61 min with them on both).
MARKERS = {"6.1": "kernel and not jvm and not newest_kernel", "6.12": "kernel and not jvm"}
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
               sys.executable, "-m", "pytest", "-m", MARKERS[series], "tests/kernel", "-v", "-rs",
               "-p", "no:cacheprovider", "--color=no", "--durations=8"]
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
    from calm_search import SHARED_CACHE_ENV, cache_root, compile_service, installed

    if not installed():
        _unavailable("openjdk-17-jdk-headless or liblucene8-java not installed (run scripts/install-deps)")
    compile_service()  # on the host: the guest sees the host root (and this cache) read-only
    command = [sys.executable, str(CALM_VM), "--kernel", "6.12", "--timeout", str(JVM_GUEST_TIMEOUT),
               "--env", f"{SHARED_CACHE_ENV}={cache_root()}", "--",
               "python", "-m", "pytest", "-m", "kernel and jvm", "tests/kernel", "-v", "-rs",
               "-p", "no:cacheprovider", "--color=no", "--durations=3"]
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


def test_guest_runs_a_venv_made_under_tmp(tmp_path):
    """A venv under /tmp (which the guest covers with its own tmpfs) is shared into the guest, and
    its `python` is the one the command gets, with the venv's packages: the harness is run by the
    venv's interpreter, as an activated venv's `scripts/calm-vm` would be. The venv is made
    without pip and sees this environment's packages (calm, h5py) through a .pth file, as
    --system-site-packages would show the base's."""
    _kernel("6.12")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    ours = [*site.getsitepackages(), sysconfig.get_path("purelib")]
    Path(purelib, "outer-env.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dict.fromkeys(ours)) + "\n")
    probe = "import sys, calm, h5py; print('prefix', sys.prefix); print('calm', calm.__file__)"
    proc = subprocess.run([str(venv / "bin" / "python"), str(CALM_VM), "--kernel", "6.12", "--",
                           "sh", "-c", f'echo "python $(command -v python)"; python -c "{probe}"'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=GUEST_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"python {venv}/bin/python" in lines, proc.stdout
    assert f"prefix {venv}" in lines, proc.stdout
    assert f"calm {REPO}/calm/__init__.py" in lines, proc.stdout


def test_guest_runs_the_callers_calm():
    """`calm` in the guest is the one next to the caller's interpreter (the venv's console script
    when the suite runs in a venv), not whatever the base Python has."""
    _kernel("6.12")
    here = Path(sys.executable).parent / "calm"
    if not here.exists():
        pytest.skip(f"no calm console script next to {sys.executable} (calm not pip-installed here)")
    proc = subprocess.run([sys.executable, str(CALM_VM), "--kernel", "6.12", "--",
                           "sh", "-c", 'echo "calm $(command -v calm)"; calm --version'],
                          cwd=REPO, capture_output=True, text=True, timeout=GUEST_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"calm {here}" in proc.stdout.splitlines(), proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("calm "), proc.stdout
