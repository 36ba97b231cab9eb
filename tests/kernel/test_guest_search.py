"""The JVM search service recorded with the soft-dirty backend on a real soft-dirty kernel: run by
tests/test_kernel_vm.py in its own 6.12 guest (marker `jvm`), not with the other kernel tests,
because the JVM under TCG emulation is slow: about 100 s to start and index 300 documents, and
requests take up to seconds (measured; see the README's search section).

Settings for TCG: a small corpus and heap (64 MiB, so G1 collects every few seconds at 3 queries/s),
the C1 JIT only (-XX:TieredStopAtLevel=1: C2 compiles far slower under emulation), 1 s samples for
60 s. THP is "madvise" in these tests (conftest.py): under "always" the kernel keeps one soft-dirty
bit per 2 MiB huge page and a G1 heap on huge pages shows whole 2 MiB pairs dirty in most samples
(measured: 75% of rewrites had a GC pause between them, against 100% with madvise).
"""

from __future__ import annotations

import csv
import json
import subprocess

import pytest

from calm.trace.reader import Trace
from tests.search_helpers import MIB, gc_signature, installed, jvm_of, profile_search

pytestmark = [pytest.mark.kernel, pytest.mark.jvm]

DURATION, INTERVAL, RATE = 60, 1.0, 3


@pytest.fixture(autouse=True)
def _loopback_up():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def test_search_profile_soft_dirty_in_guest(tmp_path):
    assert installed(), "JDK 17 / Lucene 8 not installed on the host root (scripts/install-deps)"
    out = tmp_path / "profile"
    proc = profile_search(out, "--backend", "soft-dirty", "--docs", "300", "--heap", "64m", "--reindex-interval", "5",
                          "--warmup", "20", "--jvm-option=-XX:TieredStopAtLevel=1", "--no-plots",
                          "--scenario", "256MiB@256Mbit",
                          rate=RATE, duration=DURATION, interval=INTERVAL, timeout=800)
    print(proc.stdout)  # shown with -s and on failure
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pid, _ = jvm_of(proc.stdout)
    with Trace(out / "search.h5") as trace:
        assert trace.info.backend == "soft-dirty" and trace.info.status == "complete"
        assert trace.n_samples >= 0.5 * DURATION / INTERVAL
    load = json.loads((out / "load.json").read_text())
    assert load["ok"] >= 0.8 * load["requests"], load
    regions = {r["region"]: r for r in csv.DictReader((out / "analysis" / "regions.csv").open())}
    assert regions["Java heap"]["kind"] == "named"
    jvm = json.loads((out / "jvm.json").read_text())
    sig = gc_signature(out / "search.h5", pid, [tuple(r) for r in jvm["heap"]], out / "gc.log")
    assert sig.pauses_in_trace >= 2, sig.describe()
    assert sig.is_gc_like(min_rewritten=16 * MIB), sig.describe()
