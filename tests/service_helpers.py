"""Shared by the host (tests/test_service_groundtruth.py) and in-guest (tests/kernel/test_guest_service.py)
service tests: record `groundtruth --workers`, then check the trace, the analysis and the replay
against the workload's own write log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from calm.analyzer import analyze
from calm.analyzer.accuracy import (load_service_truth, service_binomial_comparisons, service_exact_comparison,
                                    service_footprint_bounds)
from calm.replay.trace_map import map_trace
from calm.trace.reader import Trace
from calm.trace.service import ServiceSpace
from tests.collector_helpers import REPO, calm, calm_popen, wait_for_file, wait_for_samples

WORKERS, PRIVATE_PAGES, SHARED_PAGES = 3, 384, 768


def start_service(tmp: Path, *, interval: float, workers: int = WORKERS) -> tuple[subprocess.Popen, Path]:
    truth = tmp / "service-truth.npz"
    ready = tmp / "service.ready"
    cmd = [sys.executable, "-m", "calm.workloads.groundtruth", "--workers", str(workers), "--pages",
           str(PRIVATE_PAGES), "--profile", "hotcold:0.2:0.5:0.02", "--shared-pages", str(SHARED_PAGES),
           "--shared-profile", "hotcold:0.1:0.4:0.01", "--interval", str(interval), "--seed", "7",
           "--truth", str(truth), "--ready-file", str(ready)]
    proc = subprocess.Popen(cmd, cwd=REPO)
    wait_for_file(ready, proc, timeout=60)
    return proc, truth


def record_service(tmp: Path, *, backend: str, interval: float, work_interval: float,
                   samples: int) -> tuple[Path, Path]:
    """Records the service (--children from the master) until `samples` samples are on disk, then
    stops it; returns (trace, truth). The workload saves its write log as it exits."""
    service, truth = start_service(tmp, interval=work_interval)
    out = tmp / "service.h5"
    rec = calm_popen("record", "--backend", backend, "--children", "--pid", str(service.pid),
                     "--interval", str(interval), "--duration", "600", "-q", "-o", str(out))
    try:
        wait_for_samples(out, rec, samples, timeout=600)
        rec.send_signal(signal.SIGINT)
        _, stderr = rec.communicate(timeout=120)
        assert rec.returncode == 0, stderr
    finally:
        if rec.poll() is None:
            rec.kill()
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0
    return out, truth


def check_service(out: Path, truth_path: Path, tmp: Path, *, backend: str, min_compared: int) -> None:
    with Trace(out) as trace:
        assert trace.info.backend == backend and trace.info.status == "complete"
        assert trace.info.format_minor >= 1
        space = ServiceSpace(trace)
        st = load_service_truth(truth_path, trace, space)
        assert len(st.worker_rows) == WORKERS
        # one object, mapped by the master and every worker
        obj = space.objects[int(st.shared_keys[0] >> np.uint64(48)) - space.n_processes]
        assert len(obj.mapped_by) == WORKERS + 1
        exact = service_exact_comparison(trace, space, st)
        stats = service_binomial_comparisons(trace, space, st)
        must, may = service_footprint_bounds(trace, st)
        # the naive count, as before: every process's dirty pages added up
        per_process_sum = int(trace.segment_n_dirty.sum())
    assert exact.compared >= min_compared, exact
    assert exact.missed == 0 and exact.spurious == 0, exact
    for name, report in stats.items():
        assert report.pages_checked >= 20, (name, report)
        assert report.outside <= report.allowed and report.total_ok, (name, report)

    # the analysis: the service footprint holds each shared page once, and agrees with the truth
    a = analyze(out)
    universe = st.universe()
    keys = (a.pages.process.astype(np.uint64) << np.uint64(48)) | a.pages.vpn
    assert np.unique(keys).size == keys.size  # no page twice
    ours = np.intersect1d(keys, universe)
    missing, extra = np.setdiff1d(must, ours), np.setdiff1d(ours, may)
    assert missing.size == 0, (f"{missing.size} of {must.size} pages written while recording are missing "
                               f"({np.isin(missing, st.shared_keys).sum()} shared)")
    assert extra.size == 0, f"{extra.size} pages no round wrote are in the footprint"
    shared_rows = int(np.isin(keys, st.shared_keys).sum())
    assert np.intersect1d(must, st.shared_keys).size <= shared_rows <= np.intersect1d(may, st.shared_keys).size
    assert shared_rows <= SHARED_PAGES and shared_rows > SHARED_PAGES / 4
    if backend == "soft-dirty":  # several writers of a shared page in one sample: still one event
        assert per_process_sum > int(a.timeline.dirty_pages.sum())
    assert int(a.timeline.dirty_pages.sum()) == int(a.pages.dirty.sum())
    # per process: each worker's own private pages; shared ones only where the writer is known
    for w, row in enumerate(st.worker_rows):
        mine = a.pages.process == row
        assert np.isin(keys[mine], st.private_keys[w]).sum() >= 0.9 * np.setdiff1d(
            np.intersect1d(must, st.private_keys[w]), []).size
    assert (a.shared_written is not None) == (backend == "soft-dirty")

    # the replay migrates the same service pages: its footprint is the analysis's
    mapped = map_trace(out)
    assert mapped.footprint == len(a.pages)
    # and the CLI says so
    result = calm("analyze", str(out), "-o", str(tmp / "analysis"), "--no-plots", "--json", check=True)
    summary = json.loads(result.stdout)
    assert summary["service"]["dirtied_pages"] == len(a.pages)
    assert summary["service"]["shared_pages"] == int(a.is_shared(a.pages.process).sum())
    assert summary["observer"]["period_mean"] > 0 and summary["observer"]["pages_read_mean"] > 0
    if backend == "hash":
        assert any("misses a write that leaves a page's bytes" in n for n in summary["notes"])
