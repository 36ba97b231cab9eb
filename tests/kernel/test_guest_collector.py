"""The soft-dirty backend on a real soft-dirty kernel (run inside scripts/calm-vm guests): agreement
with the ground-truth workload, process trees, exiting targets, and a SIGKILLed collector.

Timings are wider than the host tests' (tests/test_collector_*.py use the hash backend) because the
guest runs under TCG emulation, several times slower than the host. Workload and collector periods
stay incommensurate (0.33 s vs 0.25 s) so write rounds drift across sampling windows.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import psutil
import pytest

from calm.analyzer.accuracy import binomial_comparison, exact_comparison, load_truth
from calm.collector.pagemap_scan import scan_supported
from calm.trace.reader import Trace
from tests.collector_helpers import REPO, calm, row_of, start_workload, stop, wait_for_file, workload_command

pytestmark = pytest.mark.kernel

INTERVAL = "0.25"
WORK_INTERVAL = 0.33


@pytest.mark.parametrize("profile", ["uniform:0.1", "hotcold:0.2:0.5:0.02"])
def test_soft_dirty_matches_truth(tmp_path, profile):
    workload, truth_path = start_workload(tmp_path, pages=2048, interval=WORK_INTERVAL, profile=profile)
    out = tmp_path / "trace.h5"
    try:
        calm("record", "--backend", "soft-dirty", "--pid", str(workload.pid), "--interval", INTERVAL,
             "--duration", "12", "-q", "-o", str(out), check=True, timeout=120)
    finally:
        stop(workload)
    truth = load_truth(truth_path)
    with Trace(out) as trace:
        assert trace.info.backend == "soft-dirty"
        assert trace.info.status == "complete"
        row = row_of(trace, workload.pid)
        exact = exact_comparison(trace, row, truth)
        stats = binomial_comparison(trace, row, truth)
    assert exact.compared >= 10, exact
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
    """A shell forks two workloads, the second only once recording runs: both recorded exactly."""
    first, truth1, ready1 = workload_command(tmp_path, pages=512, interval=WORK_INTERVAL, name="a", seed=1)
    second, truth2, ready2 = workload_command(tmp_path, pages=768, interval=WORK_INTERVAL, name="b",
                                              seed=2, duration=4)
    trigger = tmp_path / "start-second"
    script = (f"{' '.join(first)} & while [ ! -e {trigger} ]; do sleep 0.1; done; "
              f"{' '.join(second)} & wait")
    launcher = subprocess.Popen(["sh", "-c", script], cwd=REPO)
    wait_for_file(ready1, launcher, timeout=60)
    out = tmp_path / "tree.h5"
    rec = subprocess.Popen([sys.executable, "-m", "calm", "record", "--backend", "soft-dirty",
                            "--children", "--pid", str(launcher.pid), "--interval", INTERVAL,
                            "--duration", "12", "-q", "-o", str(out)],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(out, rec, timeout=60)
        time.sleep(1.5)
        trigger.touch()
        # soft-dirty also sees the workload's initial fill, which its truth does not log: compare
        # only samples that start after it signalled ready
        wait_for_file(ready2, timeout=60)
        ready_at = time.monotonic()
        _, stderr = rec.communicate(timeout=120)
        assert rec.returncode == 0, stderr
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
        late = by_pid[int(np.load(truth2)["pid"])]
        assert late.first_sample >= 2
        assert late.first_sample < late.exit_sample < trace.n_samples


def test_target_that_exits_ends_its_stream(tmp_path):
    short, _ = start_workload(tmp_path, pages=256, interval=WORK_INTERVAL, name="short")
    long_, _ = start_workload(tmp_path, pages=256, interval=WORK_INTERVAL, name="long")
    out = tmp_path / "two.h5"
    rec = subprocess.Popen([sys.executable, "-m", "calm", "record", "--backend", "soft-dirty",
                            "--pid", str(short.pid), "--pid", str(long_.pid), "--interval", INTERVAL,
                            "--duration", "8", "-o", str(out)],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(out, rec, timeout=60)
        time.sleep(2)
        stop(short)  # the short target exits while recording goes on
        _, stderr = rec.communicate(timeout=120)
        assert rec.returncode == 0, stderr
    finally:
        stop(long_)
        stop(short)
    assert f"pid {short.pid} exited" in stderr
    with Trace(out) as trace:
        rows = {p.pid: p for p in trace.processes}
        assert rows[short.pid].exit_sample > 0
        assert rows[long_.pid].exit_sample == -1
        assert rows[long_.pid].last_sample == trace.n_samples - 1
        assert trace.n_samples > rows[short.pid].exit_sample + 3


def test_sigkilled_collector_leaves_a_readable_file(tmp_path):
    workload, _ = start_workload(tmp_path, pages=512, interval=WORK_INTERVAL, name="victim")
    out = tmp_path / "killed.h5"
    rec = subprocess.Popen([sys.executable, "-m", "calm", "record", "--backend", "soft-dirty",
                            "--pid", str(workload.pid), "--interval", "0.1", "-o", str(out)],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(out, rec, timeout=60)
        time.sleep(4)
        rec.send_signal(signal.SIGKILL)
        rec.wait(20)
    finally:
        stop(workload)
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "recording"  # never closed
        assert f.attrs["backend"] == "soft-dirty"
    with Trace(out) as trace:
        assert trace.n_samples >= 5
        assert trace.n_events > 0
        assert sum(1 for _ in trace.iter_samples()) == trace.n_samples
