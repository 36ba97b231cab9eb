"""Compare a recorded trace of `calm.workloads.groundtruth` against the workload's own truth.

Why two comparisons:
- *Exact*: the workload logs when each write round ran and which pages it wrote. A sample covers
  the writes between `t_start` and `t_end`; every round that lies wholly inside that window must
  show up, page for page, and nothing else may. Samples that a round straddles (it ran while the
  collector was reading) are ambiguous and left out. This is immune to the two sides' intervals
  not being synchronised.
- *Statistical*: using only the true probabilities p_i and how many rounds fell in each sample,
  the expected count of samples in which page i is dirty is sum_s 1 - prod_r (1 - p_i(r)); the
  measured counts must lie within binomial (Poisson-binomial, normal approximation) bounds.
Both work on arrays over pages; samples are grouped by their round pattern, so no pages x samples
matrix is built.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calm.trace.reader import Trace


@dataclass
class Truth:
    base_vpn: int
    pages: int
    interval: float
    p: np.ndarray  # (phases, pages)
    phase_seconds: float
    round_start: np.ndarray  # CLOCK_MONOTONIC seconds
    round_end: np.ndarray
    written: np.ndarray
    written_end: np.ndarray
    ready_monotonic: float  # the initial fill (not in the log) was done by then

    def round_pages(self, r: int) -> np.ndarray:
        lo = int(self.written_end[r - 1]) if r else 0
        return self.written[lo:int(self.written_end[r])].astype(np.int64)

    def round_phase(self) -> np.ndarray:
        if self.p.shape[0] == 1 or self.phase_seconds <= 0:
            return np.zeros(self.round_start.size, dtype=np.int64)
        elapsed = self.round_start - self.round_start[0]  # the workload's t0 is just before round 0
        return (elapsed // self.phase_seconds).astype(np.int64) % self.p.shape[0]


def load_truth(path: str | Path) -> Truth:
    z = np.load(path)
    return Truth(
        base_vpn=int(z["base_vpn"]), pages=int(z["pages"]), interval=float(z["interval"]),
        p=z["p"], phase_seconds=float(z["phase_seconds"]),
        round_start=z["round_start"], round_end=z["round_end"], written=z["written"],
        written_end=z["written_end"], ready_monotonic=float(z["ready_monotonic"]),
    )


@dataclass
class SampleWindows:
    """For each sample: the rounds wholly inside it, and whether it cannot be judged exactly
    (a round straddles it, or it began before the workload's memory was filled)."""

    rounds_inside: list[np.ndarray]
    ambiguous: np.ndarray  # bool per sample


def sample_windows(trace: Trace, truth: Truth) -> SampleWindows:
    t0 = trace.info.start_monotonic
    a = trace.t_start + t0
    b = trace.t_end + t0
    rs, re_ = truth.round_start, truth.round_end
    inside, ambiguous = [], np.zeros(trace.n_samples, dtype=bool)
    # Samples reaching back before the workload had filled its memory hold the fill's writes.
    ambiguous |= a < truth.ready_monotonic
    for s in range(trace.n_samples):  # per sample, vectorised over rounds
        within = (rs >= a[s]) & (re_ <= b[s])
        overlapping = (re_ > a[s]) & (rs < b[s])
        inside.append(np.flatnonzero(within))
        ambiguous[s] |= bool(np.any(overlapping & ~within))
    # A write round that ran while the collector was reading may be in either neighbouring
    # sample, or partly in the baseline (the read before sample 0 starts at time 0). The read
    # after the last sample has no recorded end: any later round may have reached into it.
    read_begin = np.concatenate(([t0], b))
    read_end = np.concatenate((a, [np.inf]))
    for k in range(trace.n_samples + 1):  # read k comes before sample k
        if np.any((re_ > read_begin[k]) & (rs < read_end[k])):
            ambiguous[max(k - 1, 0):k + 1] = True
    return SampleWindows(inside, ambiguous)


def measured_pages(trace: Trace, row: int, truth: Truth) -> list[np.ndarray]:
    """Per sample, the workload page indices the trace says process `row` dirtied."""
    out = [np.empty(0, np.int64) for _ in range(trace.n_samples)]
    for s, per_process in trace.iter_samples():
        vpns = per_process.get(row)
        if vpns is None:
            continue
        idx = vpns.astype(np.int64) - truth.base_vpn
        out[s] = idx[(idx >= 0) & (idx < truth.pages)]
    return out


@dataclass
class ExactReport:
    compared: int
    ambiguous: int
    matching: int
    missed: int  # truly written, not reported
    spurious: int  # reported, not written


def exact_comparison(trace: Trace, row: int, truth: Truth, first_sample: int = 0) -> ExactReport:
    """Sample by sample, from `first_sample` to the process's last sample: after it the process had
    exited, and what it wrote after that sample's read went with its memory (no tool can see it)."""
    windows = sample_windows(trace, truth)
    measured = measured_pages(trace, row, truth)
    last = trace.processes[row].last_sample
    end = last + 1 if last >= 0 else trace.n_samples
    compared = matching = missed = spurious = 0
    for s in range(first_sample, end):
        if windows.ambiguous[s]:
            continue
        rounds = windows.rounds_inside[s]
        true = np.unique(np.concatenate([truth.round_pages(r) for r in rounds])) if rounds.size \
            else np.empty(0, np.int64)
        got = measured[s]
        compared += 1
        matching += int(np.array_equal(got, true))
        missed += np.setdiff1d(true, got).size
        spurious += np.setdiff1d(got, true).size
    return ExactReport(compared, int(windows.ambiguous[first_sample:end].sum()), matching, missed, spurious)


@dataclass
class BinomialReport:
    pages_checked: int
    outside: int  # pages whose count lies outside the two-sided bound
    allowed: int  # how many outside pages chance alone explains at this confidence
    worst_z: float
    samples: int
    total_z: float  # (all measured events - their expectation) / sd, over every page

    @property
    def total_ok(self) -> bool:
        return abs(self.total_z) <= self.z_bound

    z_bound: float = 3.29
    # (page index, count, expected count) of up to 10 pages outside: what a failing test shows
    worst: tuple[tuple[int, int, float], ...] = ()


def binomial_comparison(trace: Trace, row: int, truth: Truth, confidence: float = 0.999,
                        first_sample: int = 0) -> BinomialReport:
    """Counts per page vs their expectation from p_i and the rounds in each sample (over the
    process's life, as exact_comparison)."""
    windows = sample_windows(trace, truth)
    measured = measured_pages(trace, row, truth)
    phases = truth.round_phase()
    n_phases = truth.p.shape[0]
    last = trace.processes[row].last_sample
    end = last + 1 if last >= 0 else trace.n_samples
    samples = [s for s in range(first_sample, end) if not windows.ambiguous[s]]
    counts = np.zeros(truth.pages, dtype=np.int64)
    patterns: dict[tuple[int, ...], int] = {}
    for s in samples:
        np.add.at(counts, measured[s], 1)
        key = tuple(np.bincount(phases[windows.rounds_inside[s]], minlength=n_phases).tolist())
        patterns[key] = patterns.get(key, 0) + 1
    return poisson_binomial_check(counts, truth.p, patterns, confidence, samples=len(samples))


def poisson_binomial_check(counts: np.ndarray, p: np.ndarray, patterns: dict[tuple[int, ...], int],
                           confidence: float = 0.999, samples: int = 0) -> BinomialReport:
    """Per-page dirty counts against their expectation.

    `p` is (phases, pages); `patterns` maps "rounds of each phase in a sample" to how many samples
    had that many. P(page untouched in a sample) = prod over its rounds of (1 - p), so counts are
    Poisson-binomial; each page is judged with a normal bound (with continuity correction) where
    its variance is at least 1, and chance alone may put `allowed` pages outside.
    """
    log_q = np.log1p(-np.minimum(p, 1 - 1e-12))  # (phases, pages)
    mean = np.zeros(p.shape[1])
    var = np.zeros(p.shape[1])
    for key, n in patterns.items():
        q_all = np.exp(np.asarray(key, dtype=float) @ log_q)  # P(page untouched in that sample)
        mean += n * (1 - q_all)
        var += n * q_all * (1 - q_all)
    z_bound = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    matters = var >= 1.0  # pages with enough variance for the normal bound to mean something
    z = np.abs(counts - mean)[matters] / np.sqrt(var[matters])
    z_cc = np.maximum(np.abs(counts - mean)[matters] - 0.5, 0) / np.sqrt(var[matters])
    outside = int(np.count_nonzero(z_cc > z_bound))
    n = int(matters.sum())
    expected_out = n * (1 - confidence)
    allowed = int(math.ceil(expected_out + z_bound * math.sqrt(max(expected_out, 1e-9)) + 1))
    total_z = float((counts.sum() - mean.sum()) / math.sqrt(max(var.sum(), 1e-12)))
    pages = np.flatnonzero(matters)[np.argsort(-z_cc)[:10]]
    worst = tuple((int(i), int(counts[i]), round(float(mean[i]), 2)) for i in pages
                  if abs(counts[i] - mean[i]) - 0.5 > z_bound * math.sqrt(var[i]))
    return BinomialReport(n, outside, allowed, float(z.max()) if z.size else 0.0, samples,
                          total_z, z_bound, worst)


# -- the service mode (`groundtruth --workers`): shared pages once, private pages per worker -----

@dataclass
class ServiceTruth:
    """The truth of a `--workers` run, and the service keys of its pages in one trace."""

    truth: Truth  # rounds of all workers, in start order (round_pages: private writes of that round)
    round_worker: np.ndarray  # worker index of each round
    shared_written: np.ndarray
    shared_written_end: np.ndarray
    q: np.ndarray  # per shared page, write probability per worker round
    worker_rows: list[int]  # trace row of each worker
    private_keys: list[np.ndarray]  # per worker: service key of each private page
    shared_keys: np.ndarray  # service key of each shared page (the same for every worker)

    def round_keys(self, r: int) -> np.ndarray:
        lo = int(self.shared_written_end[r - 1]) if r else 0
        shared = self.shared_written[lo:int(self.shared_written_end[r])].astype(np.int64)
        own = self.private_keys[int(self.round_worker[r])][self.truth.round_pages(r)]
        return np.concatenate((own, self.shared_keys[shared]))

    def universe(self) -> np.ndarray:
        """Every key the workload's regions can produce, sorted."""
        return np.unique(np.concatenate(self.private_keys + [self.shared_keys]))


def load_service_truth(path: str | Path, trace: Trace, space) -> ServiceTruth:
    """Reads a `--workers` truth and names its pages as `space` (a ServiceSpace of `trace`) does."""
    z = np.load(path)
    truth = load_truth(path)
    rows = [next(p.row for p in trace.processes if p.pid == int(pid)) for pid in z["workers"]]
    private, shared = [], None
    vpn_private = np.arange(truth.pages, dtype=np.uint64) + np.uint64(truth.base_vpn)
    vpn_shared = np.arange(int(z["shared_pages"]), dtype=np.uint64) + np.uint64(int(z["shared_base_vpn"]))
    for row in rows:
        first = trace.processes[row].first_sample
        keys, _ = space.map_events(np.full(vpn_private.size, first), np.full(vpn_private.size, row, np.uint32),
                                   vpn_private)
        private.append(keys)
        keys, is_shared = space.map_events(np.full(vpn_shared.size, first),
                                           np.full(vpn_shared.size, row, np.uint32), vpn_shared)
        assert is_shared.all(), "the shared region is not a shared object in the trace's maps"
        shared = keys if shared is None else shared
        assert np.array_equal(shared, keys), "workers name the same shared page differently"
    return ServiceTruth(truth, z["round_worker"], z["shared_written"], z["shared_written_end"], z["q"],
                        rows, private, shared)


def measured_service_keys(trace: Trace, space, st: ServiceTruth) -> list[np.ndarray]:
    """Per sample, the sorted distinct service keys of the workload's pages the trace holds."""
    from calm.trace.service import distinct_per_sample

    universe = st.universe()
    out = [np.empty(0, np.uint64) for _ in range(trace.n_samples)]
    for chunk in trace.iter_chunks():
        keys, shared = space.map_chunk(chunk)
        sample, keys = distinct_per_sample(chunk.event_sample, keys, shared)
        pos = np.minimum(np.searchsorted(universe, keys), universe.size - 1)
        mine = universe[pos] == keys
        sample, keys = sample[mine], keys[mine]
        order = np.lexsort((keys, sample))
        sample, keys = sample[order], keys[order]
        bounds = np.searchsorted(sample, np.arange(chunk.first_sample, chunk.stop_sample + 1))
        for s in range(chunk.first_sample, chunk.stop_sample):
            out[s] = keys[bounds[s - chunk.first_sample]:bounds[s - chunk.first_sample + 1]]
    return out


def service_exact_comparison(trace: Trace, space, st: ServiceTruth) -> ExactReport:
    """Sample by sample, the service pages the trace holds against the union of every worker round
    wholly inside the sample (private pages of the writing worker, shared pages once)."""
    windows = sample_windows(trace, st.truth)
    measured = measured_service_keys(trace, space, st)
    compared = matching = missed = spurious = 0
    for s in range(trace.n_samples):
        if windows.ambiguous[s]:
            continue
        rounds = windows.rounds_inside[s].tolist()
        true = np.unique(np.concatenate([st.round_keys(r) for r in rounds])) if rounds else np.empty(0, np.uint64)
        got = measured[s]
        compared += 1
        matching += int(np.array_equal(got, true))
        missed += np.setdiff1d(true, got).size
        spurious += np.setdiff1d(got, true).size
    return ExactReport(compared, int(windows.ambiguous.sum()), matching, missed, spurious)


def service_binomial_comparisons(trace: Trace, space, st: ServiceTruth,
                                 confidence: float = 0.999) -> dict[str, BinomialReport]:
    """Per-page dirty counts over the judged samples against the truth: the shared pages (each
    once, written by any worker's round) and each worker's private pages (its own rounds)."""
    windows = sample_windows(trace, st.truth)
    measured = measured_service_keys(trace, space, st)
    samples = [s for s in range(trace.n_samples) if not windows.ambiguous[s]]
    reports = {}
    groups = [("shared", st.shared_keys, st.q, None)] + [
        (f"worker {w}", st.private_keys[w], st.truth.p[0], w) for w in range(len(st.worker_rows))]
    for name, keys, p, worker in groups:
        order = np.argsort(keys)
        counts = np.zeros(keys.size, dtype=np.int64)
        patterns: dict[tuple[int, ...], int] = {}
        for s in samples:
            got = measured[s]
            pos = np.minimum(np.searchsorted(keys[order], got), keys.size - 1)
            hit = keys[order][pos] == got
            np.add.at(counts, order[pos[hit]], 1)
            rounds = windows.rounds_inside[s]
            n = int(rounds.size if worker is None else np.count_nonzero(st.round_worker[rounds] == worker))
            patterns[(n,)] = patterns.get((n,), 0) + 1
        reports[name] = poisson_binomial_check(counts, np.asarray(p)[None, :], patterns, confidence,
                                               samples=len(samples))
    return reports


def service_footprint_bounds(trace: Trace, st: ServiceTruth) -> tuple[np.ndarray, np.ndarray]:
    """(must, may): the keys written by rounds wholly inside the recorded span and outside every
    reading round, which any honest trace holds (soft-dirty may lose a write made while it reads:
    between a process's pagemap read and its clear_refs), and those written by rounds that overlap
    the span at all, which bound what it can hold."""
    t0 = trace.info.start_monotonic
    begin, end = t0 + trace.t_start[0], t0 + trace.t_end[-1]
    # the last round reads while the workload goes on writing: a write then may be in the last sample
    last_read = float(trace.round_costs.read_s[-1]) if trace.round_costs is not None else trace.info.interval
    rs, re_ = st.truth.round_start, st.truth.round_end
    read_begin, read_end = t0 + trace.t_end[:-1], t0 + trace.t_start[1:]
    during_read = np.zeros(rs.size, dtype=bool)
    for a, b in zip(read_begin.tolist(), read_end.tolist()):  # one pass per reading round
        during_read |= (re_ > a) & (rs < b)
    inside = np.flatnonzero((rs >= begin) & (re_ <= end) & ~during_read)
    touching = np.flatnonzero((re_ > t0) & (rs < end + last_read))

    def keys(rounds: np.ndarray) -> np.ndarray:
        parts = [st.round_keys(int(r)) for r in rounds]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)

    return keys(inside), keys(touching)
