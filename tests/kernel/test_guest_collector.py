"""The soft-dirty backend on a real soft-dirty kernel (run inside scripts/calm-vm guests): agreement
with the ground-truth workload, process trees, exiting targets, and a SIGKILLed collector.

Timings are wider than the host tests' (tests/test_collector_*.py use the hash backend) because the
guest runs under TCG emulation, several times slower than the host. Workload and collector periods
stay incommensurate (0.33 s vs 0.25 s) so write rounds drift across sampling windows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import h5py
import numpy as np
import psutil
import pytest

from calm.analyzer.accuracy import binomial_comparison, exact_comparison, load_truth
from calm.collector.pagemap_scan import scan_supported
from calm.trace.reader import Trace
from tests.collector_helpers import (REPO, Recording, calm, last_sample_said, record_comparable, row_of,
                                    start_workload, stop, wait_for_file, workload_command)

pytestmark = pytest.mark.kernel

INTERVAL = "0.25"
WORK_INTERVAL = 0.33


@pytest.mark.parametrize("profile", ["uniform:0.1", "hotcold:0.2:0.5:0.02"])
def test_soft_dirty_matches_truth(tmp_path, profile):
    # (at most two recordings, 60 then 120 samples: the guest's whole suite has a time budget)
    out, truth_path, pid = record_comparable(tmp_path, need=20, samples=60, attempts=2, backend="soft-dirty",
                                             record_interval=float(INTERVAL), timeout=600, pages=2048,
                                             interval=WORK_INTERVAL, profile=profile)
    truth = load_truth(truth_path)
    with Trace(out) as trace:
        assert trace.info.backend == "soft-dirty"
        assert trace.info.status == "complete"
        row = row_of(trace, pid)
        exact = exact_comparison(trace, row, truth)
        stats = binomial_comparison(trace, row, truth)
    assert exact.compared >= 20, exact
    assert exact.missed == 0 and exact.spurious == 0, exact
    assert stats.pages_checked >= 300, stats
    assert stats.outside <= stats.allowed and stats.total_ok, stats


def test_auto_backend_picks_soft_dirty(tmp_path):
    cmd, _, _ = workload_command(tmp_path, pages=256, interval=WORK_INTERVAL, duration=2)
    out = tmp_path / "auto.h5"
    result = calm("record", "--interval", INTERVAL, "-o", str(out), "--", *cmd, cwd=REPO, check=True)
    assert "soft-dirty" in result.stdout + result.stderr
    with Trace(out) as trace:
        assert trace.info.backend == "soft-dirty"
        assert trace.n_events > 0
        method = trace.info.backend_method
    # PAGEMAP_SCAN where the kernel has it (6.12), full pagemap reads where it does not (6.1)
    assert method == ("pagemap-scan" if scan_supported()[0] else "pagemap-read")
    said = "reading dirty ranges with PAGEMAP_SCAN" if scan_supported()[0] else "reading the full pagemap"
    assert said in result.stderr


def test_children_followed_with_soft_dirty(tmp_path):
    """A shell forks two workloads, the second only once recording runs: both recorded exactly, the
    second from a later sample until it exits."""
    first, truth1, ready1 = workload_command(tmp_path, pages=512, interval=WORK_INTERVAL, name="a", seed=1)
    # the late workload writes a round a second: under TCG on busy cores a round can outlast a
    # sample, and rounds every 0.33 s left 39 of 40 samples ambiguous (a CI trial with two CPU hogs)
    second, truth2, ready2 = workload_command(tmp_path, pages=768, interval=1.0, name="b", seed=2)
    trigger = tmp_path / "start-second"
    script = (f"{' '.join(first)} & while [ ! -e {trigger} ]; do sleep 0.1; done; "
              f"{' '.join(second)} & wait")
    launcher = subprocess.Popen(["sh", "-c", script], cwd=REPO)
    wait_for_file(ready1, launcher, timeout=600)
    out = tmp_path / "tree.h5"
    try:
        with Recording(tmp_path, "--backend", "soft-dirty", "--children", "--pid", str(launcher.pid),
                       "--interval", INTERVAL, "-o", str(out)) as rec:
            rec.wait_ready(600)
            rec.wait_for_samples(2, 600)  # a few samples before the second workload exists
            trigger.touch()
            # soft-dirty also sees the workload's initial fill, which its truth does not log: compare
            # only samples that start after it signalled ready
            wait_for_file(ready2, launcher, timeout=600)
            ready_at = time.monotonic()
            second_pid = int(ready2.read_text())
            # 40 samples of its life: under TCG many are ambiguous (write rounds straddle the reads)
            rec.wait_for_samples(rec.samples_so_far() + 40, 600)
            os.kill(second_pid, signal.SIGTERM)  # it exits (saving its truth) while the first goes on
            exited = rec.wait_for_line(f"pid {second_pid} exited", 600)
            rec.wait_for_samples(last_sample_said(exited) + 3, 600)
            assert rec.finish(timeout=600) == 0, rec.stderr
    finally:
        for proc in psutil.Process(launcher.pid).children(recursive=True):
            proc.terminate()
        launcher.wait(20)
    with Trace(out) as trace:
        by_pid = {p.pid: p for p in trace.processes}
        assert launcher.pid in by_pid
        for truth_path in (truth1, truth2):
            pid = int(np.load(truth_path)["pid"])
            assert pid in by_pid, (pid, by_pid)
            proc = by_pid[pid]
            ready_sample = int(np.searchsorted(trace.t_start, ready_at - trace.info.start_monotonic))
            first = max(proc.first_sample + 1, ready_sample + 1 if truth_path == truth2 else 0)
            report = exact_comparison(trace, proc.row, load_truth(truth_path), first_sample=first)
            assert report.compared >= 3 and report.missed == 0 and report.spurious == 0, report
        late = by_pid[second_pid]
        assert late.first_sample >= 2
        assert late.first_sample < late.exit_sample < trace.n_samples


def test_target_that_exits_ends_its_stream(tmp_path):
    short, _ = start_workload(tmp_path, pages=256, interval=WORK_INTERVAL, name="short")
    long_, _ = start_workload(tmp_path, pages=256, interval=WORK_INTERVAL, name="long")
    out = tmp_path / "two.h5"
    try:
        with Recording(tmp_path, "--backend", "soft-dirty", "--pid", str(short.pid), "--pid", str(long_.pid),
                       "--interval", INTERVAL, "-o", str(out)) as rec:
            rec.wait_ready(600)
            rec.wait_for_samples(1, 600)
            stop(short)  # the short target exits while recording goes on
            exited = rec.wait_for_line(f"pid {short.pid} exited", 600)
            noticed_at = last_sample_said(exited) + 1  # its exit_sample
            rec.wait_for_samples(noticed_at + 4, 600)
            assert rec.finish(timeout=600) == 0, rec.stderr
    finally:
        stop(long_)
        stop(short)
    with Trace(out) as trace:
        rows = {p.pid: p for p in trace.processes}
        assert rows[short.pid].exit_sample == noticed_at > 0
        assert rows[long_.pid].exit_sample == -1
        assert rows[long_.pid].last_sample == trace.n_samples - 1
        assert trace.n_samples >= noticed_at + 4


def test_sigkilled_collector_leaves_a_readable_file(tmp_path):
    workload, _ = start_workload(tmp_path, pages=512, interval=WORK_INTERVAL, name="victim")
    out = tmp_path / "killed.h5"
    try:
        with Recording(tmp_path, "--backend", "soft-dirty", "--pid", str(workload.pid), "--interval", "0.1",
                       "-o", str(out)) as rec:
            rec.wait_ready(600)
            _, reported, _ = rec.wait_for_samples(2, 600)  # the second progress line, about 5 s in
            rec.kill()
    finally:
        stop(workload)
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "recording"  # never closed
        assert f.attrs["backend"] == "soft-dirty"
    with Trace(out) as trace:
        # flushed at least once a second: at most the last second's rounds (11 at 0.1 s) are lost
        assert trace.n_samples >= max(1, reported - 11), (trace.n_samples, reported)
        assert trace.n_events > 0
        assert sum(1 for _ in trace.iter_samples()) == trace.n_samples
