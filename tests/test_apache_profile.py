"""scripts/profile-apache end to end on the host: real Apache httpd (Debian apache2, prefork) under
Poisson load, recorded with the hash backend and --children, analysed and replayed.

Skips when apache2 is not installed (scripts/install-deps installs it), except under CI=true where a
skip would hide that the pipeline never ran. The soft-dirty twin runs in the kernel VM
(tests/kernel/test_guest_apache.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from calm.collector.backends import soft_dirty_supported
from tests.apache_helpers import PROFILE, assert_stopped, check_profile, httpd_of, installed, profile

DURATION, INTERVAL, RATE = 8, 0.5, 30


@pytest.fixture(autouse=True)
def _apache_available():
    if installed():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("apache2 is not installed in CI (scripts/install-deps installs it)")
    pytest.skip("apache2 not installed (run scripts/install-deps)")


def test_profile_apache_pipeline(tmp_path):
    out = tmp_path / "profile"
    proc = profile(out, "--backend", "hash", "--scenario", "256MiB@256Mbit", "--scenario", "64MiB@100Mbit",
                   rate=RATE, duration=DURATION, interval=INTERVAL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_profile(out, proc.stdout, backend="hash", min_samples=0.7 * DURATION / INTERVAL,
                  min_requests=0.5 * RATE * DURATION, scenarios={"256MiB@256Mbit", "64MiB@100Mbit"})
    assert (out / "analysis" / "heatmap.png").stat().st_size > 0
    assert (out / "replay" / "bandwidth.png").stat().st_size > 0


@pytest.mark.skipif(soft_dirty_supported()[0], reason="needs a kernel without soft-dirty to make recording fail")
def test_apache_stopped_when_recording_fails(tmp_path):
    """--backend soft-dirty is refused on this kernel after httpd started: one error line, and httpd
    and its runtime directory are gone."""
    proc = profile(tmp_path / "fail", "--backend", "soft-dirty", rate=RATE, duration=DURATION,
                   interval=INTERVAL, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("profile-apache: error: calm record"), proc.stderr
    pid, root = httpd_of(proc.stdout)
    assert_stopped(pid, root)


def test_bad_option_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(PROFILE), "--rate", "0", "-o", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "must be positive" in proc.stderr and "Traceback" not in proc.stderr
