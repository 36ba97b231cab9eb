"""scripts/profile-search end to end on the host: the Lucene search service on a real JVM under
Poisson queries, recorded with the hash backend (the host kernel has no soft-dirty), analysed with
the Java heap named, and replayed.

The GC check (scripts/calm_jvm.py, `GcSignature`): at least 16 MiB of the Java heap rewritten in
bulk (half or more of a 1 MiB chunk dirty in one sample) on two or more occasions, that being most
of what was bulk-written, and nearly every such rewrite separated from the previous one by a GC
pause in the JVM's own log. The control run with Epsilon GC (which never collects, so memory is
written once and never reclaimed) must fail that check: the criterion can fail.

Skips when the JDK or Lucene is missing (scripts/install-deps installs them), except under CI=true.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from calm.collector.backends import soft_dirty_supported
from calm.trace.reader import Trace
from tests.search_helpers import (MIB, PROFILE, assert_stopped, gc_pauses, gc_signature,  # noqa: F401
                                  java_available, jvm_of, profile_search)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("java_available")]

DURATION, INTERVAL, RATE, DOCS = 20, 0.5, 20, 2000
SERVICE = ["--docs", str(DOCS), "--reindex-interval", "2", "--warmup", "5"]


def profile(out: Path, *extra: str, timeout: float = 600):
    return profile_search(out, *SERVICE, *extra, rate=RATE, duration=DURATION, interval=INTERVAL, timeout=timeout)


@pytest.fixture(scope="module")
def g1_profile(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "profile"
    proc = profile(out, "--backend", "hash", "--heap", "128m", "--scenario", "256MiB@256Mbit",
                   "--scenario", "1GiB@1Gbit")
    return out, proc


def test_profile_search_pipeline(g1_profile):
    out, proc = g1_profile
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pid, root = jvm_of(proc.stdout)
    assert_stopped(pid, root)
    with Trace(out / "search.h5") as trace:
        assert trace.info.backend == "hash" and trace.info.status == "complete"
        assert trace.n_samples >= 0.7 * DURATION / INTERVAL, trace.n_samples
        assert [(p.pid, p.name) for p in trace.processes] == [(pid, "java")]
    load = json.loads((out / "load.json").read_text())
    assert load["requests"] >= 0.5 * RATE * DURATION and load["ok"] >= 0.9 * load["requests"], load
    queries = (out / "queries.txt").read_text().splitlines()
    assert len(queries) >= 1000 and len(set(queries)) < len(queries)  # a log: popular queries repeat
    ready = json.loads((out / "jvm.json").read_text())["ready"]
    assert ready["docs"] == DOCS and ready["heap"]["max"] == 128 * MIB

    rows = list(csv.DictReader((out / "replay" / "results.csv").open()))
    assert {r["scenario"] for r in rows} == {"256MiB@256Mbit", "1GiB@1Gbit"}
    assert {r["algorithm"] for r in rows} == {"calm", "clark", "xen", "qemu", "fixed"}
    assert all(np.isfinite(float(r["cost_s"])) for r in rows)
    table = (out / "slides-table.md").read_text()
    assert "| 256MiB@256Mbit | calm |" in table and "36.9" in table  # ours beside the slides' Clark 36.86
    for plot in ("top100", "top500", "over_time"):  # the slides' three dirtying plots
        assert (out / "analysis" / f"{plot}.png").stat().st_size > 0


def test_attribution_names_the_java_heap(g1_profile):
    """The heap range comes from the JVM (jcmd GC.heap_info); calm analyze names the pages in it.
    The heap is the largest single region by dirty page-samples; "anonymous" gathers every other
    anonymous mapping (malloc arenas, JIT code, metaspace, GC tables, thread stacks) under one label
    and is not one region (--nmt names those too)."""
    out, proc = g1_profile
    assert proc.returncode == 0, proc.stderr
    pid, _ = jvm_of(proc.stdout)
    names = [ln.split(maxsplit=2) for ln in (out / "region-names.txt").read_text().splitlines()
             if not ln.startswith("#")]
    heap = [(int(r.split("-")[0], 16), int(r.split("-")[1], 16)) for p, r, n in names if n == "Java heap"]
    assert names and all(int(p) == pid for p, _, _ in names)
    assert len(heap) == 1 and heap[0][1] - heap[0][0] == 128 * MIB  # -Xmx128m, reserved whole
    regions = list(csv.DictReader((out / "analysis" / "regions.csv").open()))
    java = [r for r in regions if r["region"] == "Java heap"]
    assert len(java) == 1, [r["region"] for r in regions]
    events = {r["region"]: float(r["dirty_page_samples"]) for r in regions}
    assert events["Java heap"] == max(v for k, v in events.items() if k != "anonymous"), events
    assert events["Java heap"] >= 0.3 * sum(events.values()), events
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert "Java heap" in json.dumps(summary["regions"])


def test_trace_shows_gc_rewrites_of_the_heap(g1_profile):
    out, proc = g1_profile
    assert proc.returncode == 0, proc.stderr
    pid, _ = jvm_of(proc.stdout)
    jvm = json.loads((out / "jvm.json").read_text())
    heap = [tuple(r) for r in jvm["heap"]]
    sig = gc_signature(out / "search.h5", pid, heap, out / "gc.log")
    assert sig.as_dict() == jvm["gc_signature"]  # what the script reported is what the trace holds
    assert sig.pauses_in_trace >= 2, "G1 did not collect during the recording"
    assert sig.is_gc_like(), sig.describe()
    assert "GC signature: " in proc.stdout
    pauses = gc_pauses(out / "gc.log")
    assert len(pauses) >= sig.pauses_in_trace and np.all(pauses[:, 1] >= pauses[:, 0])


def test_epsilon_control_has_no_gc_signature(tmp_path):
    """Epsilon GC never reclaims memory: each heap chunk is bulk-written once, as allocation passes,
    and never again. The same check must fail here."""
    out = tmp_path / "epsilon"
    proc = profile(out, "--backend", "hash", "--gc", "epsilon", "--heap", "2g", "--no-plots",
                   "--scenario", "1GiB@1Gbit")  # nothing is freed: the footprint outgrows 256 MiB
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pid, _ = jvm_of(proc.stdout)
    jvm = json.loads((out / "jvm.json").read_text())
    sig = gc_signature(out / "search.h5", pid, [tuple(r) for r in jvm["heap"]], out / "gc.log")
    assert sig.bulk_written_bytes >= 16 * MIB, sig.describe()  # the allocation did pass through the heap
    assert sig.rewritten_bytes <= 2 * MIB, sig.describe()
    assert not sig.is_gc_like()
    assert sig.pauses_in_trace == 0


@pytest.mark.skipif(soft_dirty_supported()[0], reason="needs a kernel without soft-dirty to make recording fail")
def test_jvm_stopped_when_recording_fails(tmp_path):
    proc = profile(tmp_path / "fail", "--backend", "soft-dirty", "--no-plots", timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("profile-search: error: calm record"), proc.stderr
    pid, root = jvm_of(proc.stdout)
    assert_stopped(pid, root)


def test_sigterm_stops_everything(tmp_path):
    """SIGTERM while the load runs: exit 130 with one line, the JVM, its runtime directory and the
    recorder gone."""
    proc = subprocess.Popen([sys.executable, str(PROFILE), "-o", str(tmp_path / "p"), "--no-install", "--backend",
                             "hash", "--rate", "5", "--duration", "60", *SERVICE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # printed once the JVM is ready, before recording starts
    pid, root = jvm_of(first)
    deadline = 120
    trace = tmp_path / "p" / "search.h5"
    start = time.monotonic()
    while not trace.exists():  # the recorder's handshake: it has opened the trace
        assert time.monotonic() - start < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["profile-search: interrupted; the search service is stopped"], stderr
    assert_stopped(pid, root)
    recorders = [p for p in psutil.process_iter(["cmdline"]) if str(trace) in " ".join(p.info["cmdline"] or [])]
    assert not recorders, "calm record still running"
