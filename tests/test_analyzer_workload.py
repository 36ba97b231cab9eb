"""Statistical agreement: the analyzer's per-page p on a real recording of the ground-truth workload.

The workload writes page i with probability p_i once per round and logs when each round ran. A
sample of the trace sees page i dirty with probability 1 - (1 - p_i)**k, k = rounds in that
sample (the two sides' intervals are not synchronised, so k varies). Summed over the samples in
which the page was mapped, that is the expected dirty count, a Poisson-binomial variable; the
analyzer's count must lie inside its 99.9% normal bound for all but the pages chance explains.
"""

from __future__ import annotations


import numpy as np
import pytest

from calm.analyzer import analyze
from calm.analyzer.accuracy import load_truth, poisson_binomial_check
from calm.trace.reader import Trace
from tests.collector_helpers import calm, record_workload, start_workload, stop

CONFIDENCE = 0.999


def _rounds_per_sample(trace_path, truth, first: int, stop_sample: int) -> np.ndarray:
    with Trace(trace_path) as trace:
        t0 = trace.info.start_monotonic
        # a sample holds the writes since the previous round began reading (its t_end); the
        # first one those since its own t_start (earlier writes went into the baseline)
        b = trace.t_end[first:stop_sample] + t0
        a = np.concatenate(([trace.t_start[first]], trace.t_end[first:stop_sample - 1])) + t0
    mid = (truth.round_start + truth.round_end) / 2
    return np.searchsorted(mid, b) - np.searchsorted(mid, a)


def _check(dirty: np.ndarray, p: np.ndarray, k: np.ndarray) -> tuple[int, int, int]:
    """(pages checked, outside the bound, allowed by chance) for counts `dirty` given truth p."""
    ks, n_with = np.unique(k, return_counts=True)
    patterns = {(int(kk),): int(n) for kk, n in zip(ks, n_with)}
    report = poisson_binomial_check(dirty, p[None, :], patterns, CONFIDENCE)
    return report.pages_checked, report.outside, report.allowed


@pytest.mark.parametrize("profile", ["uniform:0.2", "zipf:0.3:0.9"])
def test_analyzer_p_matches_the_workload_truth(tmp_path, profile):
    trace, truth_path, pid = record_workload(tmp_path, pages=2048, interval=0.1, profile=profile,
                                             seed=7, record_interval=0.2, duration=5)
    truth = load_truth(truth_path)
    a = analyze(trace, pids=[pid])
    proc = a.processes[0]
    n_life = proc.last_sample - proc.first_sample + 1
    assert n_life >= 20

    # the analyzer's counts for the workload's pages (pages it never saw dirty have 0)
    idx = a.pages.vpn.astype(np.int64) - truth.base_vpn
    inside = (idx >= 0) & (idx < truth.pages)
    dirty = np.zeros(truth.pages, dtype=np.int64)
    dirty[idx[inside]] = a.pages.dirty[inside]
    # the workload's region is mapped for the whole life of the process, per its map snapshots
    assert np.all(a.pages.mapped[inside] == n_life)
    assert inside.sum() >= 300

    k = _rounds_per_sample(trace, truth, proc.first_sample, proc.last_sample + 1)
    p_true = truth.p[0]
    checked, outside, allowed = _check(dirty, p_true, k)
    assert checked >= 300, (checked, profile)
    assert outside <= allowed, (outside, allowed, checked)
    # not vacuous: the same counts disagree with a truth 1.5 times as hot
    _, outside_wrong, allowed_wrong = _check(dirty, np.minimum(p_true * 1.5, 1.0), k)
    assert outside_wrong > allowed_wrong

    # the per-sample p the analyzer reports is that count over the mapped samples
    p_measured = dirty / n_life
    expected_p = (1 - np.exp(np.log1p(-np.minimum(p_true, 1 - 1e-12))[None, :] * k[:, None])).mean(axis=0)
    assert abs(p_measured.mean() - expected_p.mean()) < 0.02
    if profile.startswith("zipf"):
        hottest = np.argsort(-p_true)[:50]
        coldest = np.argsort(p_true)[:1000]
        assert p_measured[hottest].mean() > 2 * p_measured[coldest].mean()


def test_process_that_exits_mid_recording(tmp_path):
    """Two real workloads, one exits half-way: its p is over its own life, not the whole trace."""
    short, short_truth = start_workload(tmp_path, pages=512, interval=0.05, profile="uniform:1.0",
                                        duration=2.0, name="short")
    long, _ = start_workload(tmp_path, pages=512, interval=0.05, profile="uniform:0.5", name="long")
    trace = tmp_path / "t.h5"
    try:
        calm("record", "--backend", "hash", "--pid", str(short.pid), "--pid", str(long.pid),
             "--interval", "0.2", "--duration", "4", "-q", "-o", str(trace), check=True)
    finally:
        stop(short)
        stop(long)
    a = analyze(trace)
    by_pid = {p.pid: p for p in a.processes}
    gone, alive = by_pid[short.pid], by_pid[long.pid]
    assert gone.exit_sample >= 0 and alive.exit_sample == -1
    assert gone.last_sample < a.n_samples - 5  # it really ended early
    truth = load_truth(short_truth)
    rows = a.pages.process == gone.row
    idx = a.pages.vpn[rows].astype(np.int64) - truth.base_vpn
    mine = (idx >= 0) & (idx < truth.pages)
    assert mine.sum() == truth.pages  # every page written every round
    life = gone.last_sample - gone.first_sample + 1
    assert np.all(a.pages.mapped[rows][mine] <= life)
    # written in every round: dirty in every sample it was mapped (over the whole trace it would
    # look like ~half)
    assert np.median(a.pages.p[rows][mine]) == 1.0
    assert a.timeline.dirty_by_process[gone.row][gone.last_sample + 1:].sum() == 0
