"""Recording real process trees: children that come and go, targets that exit, signals, SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import psutil

from calm.analyzer.accuracy import exact_comparison, load_truth
from calm.trace.reader import Trace
from tests.collector_helpers import REPO, calm, start_workload, stop, wait_for_file, workload_command


def _calm_popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "calm", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_children_are_followed_as_they_appear(tmp_path):
    """A shell that forks two workloads, the second one later: both are recorded, correctly."""
    first, truth1, _ = workload_command(tmp_path, pages=512, interval=0.13, name="a", seed=1)
    second, truth2, _ = workload_command(tmp_path, pages=768, interval=0.13, name="b", seed=2,
                                         duration=2.5)
    script = f"{' '.join(first)} & sleep 1; {' '.join(second)} & wait"
    launcher = subprocess.Popen(["sh", "-c", script], cwd=REPO)
    out = tmp_path / "tree.h5"
    try:
        calm("record", "--backend", "hash", "--children", "--pid", str(launcher.pid),
             "--interval", "0.1", "--duration", "5", "-q", "-o", str(out), check=True)
    finally:
        for proc in psutil.Process(launcher.pid).children(recursive=True):
            proc.terminate()
        launcher.wait(10)
    with Trace(out) as trace:
        by_pid = {p.pid: p for p in trace.processes}
        for truth_path in (truth1, truth2):
            truth = load_truth(truth_path)
            pid = int(np.load(truth_path)["pid"])
            assert pid in by_pid, (pid, by_pid)
            proc = by_pid[pid]
            report = exact_comparison(trace, proc.row, truth, first_sample=proc.first_sample + 1)
            assert report.compared >= 5 and report.missed == 0 and report.spurious == 0, report
        # the shell itself is recorded too, and the second workload started later and exited early
        assert launcher.pid in by_pid
        late = by_pid[int(np.load(truth2)["pid"])]
        assert late.first_sample >= 5
        assert late.exit_sample > late.first_sample and late.exit_sample < trace.n_samples
        assert late.last_sample < late.exit_sample
        assert trace.segment_sample[trace.segment_process == late.row].max() == late.last_sample


def test_one_target_exits_the_others_go_on(tmp_path):
    short, _ = start_workload(tmp_path, pages=256, interval=0.1, duration=1.0, name="short")
    long_, _ = start_workload(tmp_path, pages=256, interval=0.1, name="long")
    out = tmp_path / "two.h5"
    try:
        result = calm("record", "--backend", "hash", "--pid", str(short.pid), "--pid",
                      str(long_.pid), "--interval", "0.1", "--duration", "3", "-o", str(out),
                      check=True)
    finally:
        stop(long_)
        short.wait(10)
    assert f"pid {short.pid} exited" in result.stderr
    with Trace(out) as trace:
        rows = {p.pid: p for p in trace.processes}
        assert rows[short.pid].exit_sample > 0
        assert rows[long_.pid].exit_sample == -1
        assert rows[long_.pid].last_sample == trace.n_samples - 1
        assert trace.n_samples > rows[short.pid].exit_sample + 5
        assert trace.info.end_reason.startswith("duration")


def test_launched_command_recorded_until_it_exits(tmp_path):
    cmd, truth_path, _ = workload_command(tmp_path, pages=256, interval=0.1, duration=1.5)
    out = tmp_path / "cmd.h5"
    result = calm("record", "--backend", "hash", "--interval", "0.1", "-o", str(out), "--", *cmd,
                  cwd=REPO, check=True)
    assert "command exited with status 0" in result.stderr
    with Trace(out) as trace:
        assert trace.info.command == cmd
        assert trace.processes[0].cmdline == cmd
        assert 10 <= trace.n_samples <= 30
        assert trace.n_events > 0


def test_duration_stops_a_launched_command(tmp_path):
    cmd, _, _ = workload_command(tmp_path, pages=64, interval=0.1)
    out = tmp_path / "cmd.h5"
    started = time.monotonic()
    result = calm("record", "--interval", "0.1", "--duration", "1", "-o", str(out), "--", *cmd,
                  cwd=REPO, check=True)
    assert time.monotonic() - started < 30
    assert "duration of 1 s reached" in result.stderr


def test_sigint_and_sigterm_close_the_file_cleanly(tmp_path):
    for sig in (signal.SIGINT, signal.SIGTERM):
        workload, _ = start_workload(tmp_path, pages=256, name=f"w{sig}")
        out = tmp_path / f"sig{sig}.h5"
        rec = _calm_popen("record", "--pid", str(workload.pid), "--interval", "0.05", "-o", str(out))
        try:
            time.sleep(2)
            rec.send_signal(sig)
            _, stderr = rec.communicate(timeout=20)
        finally:
            stop(workload)
        assert rec.returncode == 0, stderr
        assert "Traceback" not in stderr
        with Trace(out) as trace:
            assert trace.info.status == "complete"
            assert trace.info.end_reason == f"stopped by {signal.Signals(sig).name}"
            assert trace.n_samples >= 10


def test_sigkill_leaves_every_flushed_sample_readable(tmp_path):
    workload, _ = start_workload(tmp_path, pages=512, name="victim")
    out = tmp_path / "killed.h5"
    rec = _calm_popen("record", "--pid", str(workload.pid), "--interval", "0.05", "-o", str(out))
    try:
        wait_for_file(out)
        time.sleep(3.2)
        killed_at = time.monotonic()
        rec.kill()
        rec.wait(10)
    finally:
        stop(workload)
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "recording"  # never closed
        start = float(f.attrs["start_monotonic"])
    with Trace(out) as trace:
        # flushed at least once a second: samples up to about a second before the kill are there
        assert trace.n_samples >= 20
        assert trace.t_end[-1] >= killed_at - start - 1.5
        assert trace.n_events > 0
        assert sum(1 for _ in trace.iter_samples()) == trace.n_samples
