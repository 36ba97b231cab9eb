"""Apache httpd recorded with the soft-dirty backend on a real soft-dirty kernel (run inside the
scripts/calm-vm guests by tests/test_kernel_vm.py): the prefork workers dirty pages, and the
analysis and replay table are produced.

Apache's binaries come from the host root (shared read-only); its runtime directory, the trace and
the outputs live on the guest's tmpfs /tmp. The guest's loopback starts down: it is brought up
here. Load and duration are small because the guest runs under TCG emulation.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.apache_helpers import check_profile, installed, profile

pytestmark = [pytest.mark.kernel, pytest.mark.newest_kernel]  # see tests/test_kernel_vm.py

DURATION, INTERVAL, RATE = 8, 1.0, 10


@pytest.fixture(autouse=True)
def _loopback_up():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def test_apache_soft_dirty_in_guest(tmp_path):
    assert installed(), "apache2 is not installed on the host root (scripts/install-deps)"
    out = tmp_path / "profile"
    proc = profile(out, "--backend", "soft-dirty", "--no-plots", "--scenario", "64MiB@100Mbit",
                   rate=RATE, duration=DURATION, interval=INTERVAL, timeout=400)
    print(proc.stdout)  # shown with -s and on failure
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_profile(out, proc.stdout, backend="soft-dirty", min_samples=4,
                  min_requests=0.5 * RATE * DURATION, scenarios={"64MiB@100Mbit"})
