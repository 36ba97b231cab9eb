"""Recording real process trees: children that come and go, targets that exit, signals, SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import h5py
import numpy as np
import psutil

from calm.analyzer.accuracy import exact_comparison, load_truth
from calm.trace.reader import Trace
from tests.collector_helpers import (REPO, Recording, calm, last_sample_said, start_workload, stop, wait_for_file,
                                    workload_command)


def _record_a_growing_tree(tmp_path, life: int):
    """A shell forks a workload, and a second one once recording has started; the second is stopped
    after `life` more samples. Returns (trace, [(truth, pid)], shell pid, second pid, the sample at
    which calm noticed the second had gone)."""
    first, truth1, first_ready = workload_command(tmp_path, pages=512, interval=0.13, name="a", seed=1)
    second, truth2, second_ready = workload_command(tmp_path, pages=768, interval=0.13, name="b", seed=2)
    go = tmp_path / "go"
    script = f"{' '.join(first)} & until [ -e {go} ]; do sleep 0.05; done; {' '.join(second)} & wait"
    launcher = subprocess.Popen(["sh", "-c", script], cwd=REPO)
    out = tmp_path / "tree.h5"
    try:
        with Recording(tmp_path, "--backend", "hash", "--children", "--pid", str(launcher.pid),
                       "--interval", "0.1", "-o", str(out)) as rec:
            rec.wait_ready()
            go.touch()  # the shell starts the second workload only now
            wait_for_file(second_ready, launcher)
            second_pid = int(second_ready.read_text())
            rec.wait_for_samples(rec.samples_so_far() + life)
            os.kill(second_pid, signal.SIGTERM)  # it exits (saving its truth) while the first goes on
            exited = rec.wait_for_line(f"pid {second_pid} exited")
            noticed_at = last_sample_said(exited) + 1  # its exit_sample: the first sample without it
            rec.wait_for_samples(noticed_at + 2)
            assert rec.finish() == 0, rec.stderr
    finally:
        for proc in psutil.Process(launcher.pid).children(recursive=True):
            proc.terminate()
        launcher.wait(60)
    truths = [(load_truth(t), int(np.load(t)["pid"])) for t in (truth1, truth2)]
    assert truths[1][1] == second_pid and truths[0][1] == int(first_ready.read_text())
    return out, truths, launcher.pid, second_pid, noticed_at


def test_children_are_followed_as_they_appear(tmp_path):
    """Both workloads of a growing tree are recorded, correctly, the second one from a later sample
    until it exits. Compared on at least 5 unambiguous samples each: when a busy machine leaves
    fewer (write rounds straddling calm's reads), the tree is recorded again with a longer life."""
    for attempt, life in enumerate((30, 60, 120)):
        where = tmp_path / f"attempt{attempt}"
        where.mkdir()
        out, truths, shell, second_pid, noticed_at = _record_a_growing_tree(where, life)
        with Trace(out) as trace:
            by_pid = {p.pid: p for p in trace.processes}
            reports = [exact_comparison(trace, by_pid[pid].row, truth, first_sample=by_pid[pid].first_sample + 1)
                       for truth, pid in truths if pid in by_pid]
        if len(reports) == 2 and min(r.compared for r in reports) >= 5:
            break
    for (_, pid) in truths:
        assert pid in by_pid, (pid, by_pid)
    for report in reports:
        assert report.compared >= 5 and report.missed == 0 and report.spurious == 0, report
    with Trace(out) as trace:
        # the shell itself is recorded too, and the second workload started later and exited early
        assert shell in by_pid
        late = by_pid[second_pid]
        assert by_pid[truths[0][1]].first_sample == 0
        assert late.first_sample >= 1  # it did not exist when recording started
        assert late.exit_sample == noticed_at and late.first_sample < late.exit_sample < trace.n_samples
        assert late.last_sample < late.exit_sample
        assert trace.segment_sample[trace.segment_process == late.row].max() == late.last_sample


def test_one_target_exits_the_others_go_on(tmp_path):
    short, _ = start_workload(tmp_path, pages=256, interval=0.1, name="short")
    long_, _ = start_workload(tmp_path, pages=256, interval=0.1, name="long")
    out = tmp_path / "two.h5"
    try:
        with Recording(tmp_path, "--backend", "hash", "--pid", str(short.pid), "--pid", str(long_.pid),
                       "--interval", "0.1", "-o", str(out)) as rec:
            rec.wait_ready()
            rec.wait_for_samples(2)  # it has samples of its own
            stop(short)  # it exits while the recording goes on
            exited = rec.wait_for_line(f"pid {short.pid} exited")
            noticed_at = last_sample_said(exited) + 1  # its exit_sample: the first sample without it
            _, _, processes = rec.wait_for_samples(noticed_at + 6)
            assert processes == 1
            assert rec.finish() == 0, rec.stderr
    finally:
        stop(long_)
        stop(short)
    with Trace(out) as trace:
        rows = {p.pid: p for p in trace.processes}
        # the message names the last sample that holds the process, never one past the trace
        gone = rows[short.pid]
        assert gone.last_sample == gone.exit_sample - 1 < trace.n_samples
        assert gone.exit_sample == noticed_at > 0
        assert rows[long_.pid].exit_sample == -1
        assert rows[long_.pid].last_sample == trace.n_samples - 1
        assert trace.n_samples >= noticed_at + 6
        assert trace.info.end_reason == "stopped by SIGINT"


def test_launched_command_recorded_until_it_exits(tmp_path):
    cmd, truth_path, _ = workload_command(tmp_path, pages=256, interval=0.1, duration=1.5)
    out = tmp_path / "cmd.h5"
    result = calm("record", "--backend", "hash", "--interval", "0.1", "--json", "-o", str(out), "--", *cmd,
                  cwd=REPO, check=True)
    assert "command exited with status 0" in result.stderr
    truth = load_truth(truth_path)
    summary = json.loads(result.stdout)
    with Trace(out) as trace:
        # one span (FORMAT.md), the same in the summary, in --json and in the file
        assert summary["span_s"] == round(trace.duration, 3) and summary["samples"] == trace.n_samples
        assert summary["baseline_read_s"] == round(trace.baseline_read, 3) > 0
        assert f"{trace.n_samples} samples over {trace.duration:.1f} s" in result.stderr
        for line in result.stderr.splitlines():
            if " exited after sample " in line:
                assert int(line.rsplit(" ", 1)[1]) < trace.n_samples, line
        assert trace.info.command == cmd
        assert trace.processes[0].cmdline == cmd
        assert trace.n_events > 0
        # from before the command started to after its last write (calm noticed the exit later)
        start = trace.info.start_monotonic
        assert start < truth.ready_monotonic and start + trace.t_end[-1] > truth.round_end[-1]
        # it exited: noticed in the last sample's round, or just after it
        assert trace.processes[0].last_sample < trace.processes[0].exit_sample <= trace.n_samples


def test_duration_stops_a_launched_command(tmp_path):
    cmd, _, _ = workload_command(tmp_path, pages=64, interval=0.1)
    out = tmp_path / "cmd.h5"
    result = calm("record", "--interval", "0.1", "--duration", "1", "-o", str(out), "--", *cmd,
                  cwd=REPO, check=True)
    assert "duration of 1 s reached" in result.stderr


def test_sigint_and_sigterm_close_the_file_cleanly(tmp_path):
    """A signal ends the recording at once, and every sample taken so far (flushed or still
    buffered) is in the closed file."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        workload, _ = start_workload(tmp_path, pages=256, name=f"w{sig}")
        out = tmp_path / f"sig{sig}.h5"
        try:
            with Recording(tmp_path, "--pid", str(workload.pid), "--interval", "0.05", "-o", str(out)) as rec:
                rec.wait_for_samples(1)
                code = rec.finish(sig)
        finally:
            stop(workload)
        assert code == 0, rec.stderr
        assert "Traceback" not in rec.stderr
        summary = re.search(r"\[ calm record: .*?([\d,]+) samples? over", rec.stderr)
        with Trace(out) as trace:
            assert trace.info.status == "complete"
            assert trace.info.end_reason == f"stopped by {signal.Signals(sig).name}"
            assert trace.n_samples == int(summary[1].replace(",", "")) >= 1


def test_sigkill_leaves_every_flushed_sample_readable(tmp_path):
    """calm flushes at least once a second: when it is killed, at most the samples of its last
    second are lost (at 0.05 s, at most 21 rounds: one per slot of the fixed-rate schedule)."""
    workload, _ = start_workload(tmp_path, pages=512, name="victim")
    out = tmp_path / "killed.h5"
    try:
        with Recording(tmp_path, "--pid", str(workload.pid), "--interval", "0.05", "-o", str(out)) as rec:
            rec.wait_ready()
            rec.wait_for_samples(1)
            _, reported, _ = rec.wait_for_samples(2)  # the next progress line, about 5 s later
            rec.kill()
    finally:
        stop(workload)
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "recording"  # never closed
    with Trace(out) as trace:
        assert trace.n_samples >= reported - (1 / 0.05 + 1), (trace.n_samples, reported)
        assert trace.n_events > 0
        assert sum(1 for _ in trace.iter_samples()) == trace.n_samples
