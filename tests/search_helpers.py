"""Shared by the host (tests/test_search_profile.py) and in-guest (tests/kernel/test_guest_search.py)
search-service tests: run scripts/profile-search and look at what it left."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "scripts" / "profile-search"
sys.path.insert(0, str(REPO / "scripts"))

from calm_jvm import gc_pauses, gc_signature  # noqa: E402,F401  (re-exported for the tests)
from calm_search import installed  # noqa: E402,F401

MIB = 1 << 20


@pytest.fixture(scope="session")
def java_available():
    """Skips when the JDK or Lucene is missing (scripts/install-deps installs them), except under
    CI=true, where a skip would hide that the test never ran."""
    if installed():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("JDK 17 or Lucene 8 missing in CI (scripts/install-deps installs them)")
    pytest.skip("needs openjdk-17-jdk-headless and liblucene8-java (run scripts/install-deps)")


def profile_search(out: Path, *extra: str, rate: float, duration: float, interval: float,
                   timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs scripts/profile-search (never installing: tests get the JDK from scripts/install-deps)."""
    return subprocess.run([sys.executable, str(PROFILE), "-o", str(out), "--no-install", "--rate", str(rate),
                           "--duration", str(duration), "--interval", str(interval), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def jvm_of(stdout: str) -> tuple[int, Path]:
    """(the JVM's pid, its runtime directory) from the script's first line."""
    m = re.search(r"search: JVM (\d+) on .*; runtime (\S+)\)", stdout)
    assert m, stdout
    return int(m[1]), Path(m[2])


def assert_stopped(pid: int, root: Path) -> None:
    try:
        proc = psutil.Process(pid)
        assert proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "java", "the JVM is still running"
    except psutil.NoSuchProcess:
        pass
    assert not root.exists(), f"runtime directory {root} left behind"
