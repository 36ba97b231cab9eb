"""Per-page write rates learnt online from the dirty log, for a page-aware policy (calm-pages).

A migration engine sees, step by step, which pages it sent and which the guest wrote; it does not
know each page's write probability `p_j` (docs/model.md, "Non-uniform pages"). Estimating `p_j`
page by page from a few steps is noise (a page written once in ten steps says little), so pages
are pooled into *classes* by how often they have been seen written so far (log-spaced counts:
0, 1, 2, 3, 4-5, 6-7, 8-11, ...), and each class's rate is measured directly: writes to pages
of that class per page-step spent in it, exponentially weighted over `memory_steps` so that a
rate that ramps or changes phase is followed. On a uniform workload every class measures the
same `p` (the process has no memory, so a page's count says nothing of its future); on a skewed
one the hot pages climb to high classes within a few steps and their classes measure a high
rate, while the never-written pages (class 0, together with the RAM no page of the trace touches)
measure the rate at which cold memory is first written. A recorded profile can seed the counts
(`seed_p`, worth `seed_steps` steps of observation).

Everything a step changes costs O(pages sent + pages written + classes): state per footprint page
(count, class, dirty flag) and per class (dirty and clean pages, weighted writes and exposure).
The never-written RAM outside the footprint is one count in class 0.
"""

from __future__ import annotations

import math

import numpy as np

N_CLASSES = 64  # counts up to 2**32 steps
PRIOR_PAGE_STEPS = 1.0  # a class's rate starts at the overall rate, worth one page-step


def class_of(count: np.ndarray) -> np.ndarray:
    """The class of pages seen written `count` times (two classes per doubling)."""
    return np.minimum(N_CLASSES - 1, np.floor(2.0 * np.log2(1.0 + np.asarray(count, dtype=float)))).astype(np.int64)


class PageRates:
    """Classes of pages by write count, with their measured rates and dirty/clean counts."""

    def __init__(self, n_pages: int, footprint: int, memory_steps: float,
                 seed_p: np.ndarray | None = None, seed_steps: float = 0.0) -> None:
        if memory_steps < 1:
            raise ValueError("the rates' memory must be at least one step")
        self.M, self.F = int(n_pages), int(footprint)
        self.keep = 1.0 - 1.0 / memory_steps
        seeded = seed_p is not None and seed_steps > 0
        self.count = np.asarray(seed_p, dtype=float) * seed_steps if seeded else np.zeros(self.F)
        self.cls = class_of(self.count)
        self.dirty = np.ones(self.F, dtype=bool)
        self.outside = self.M - self.F  # never-written RAM (class 0)
        self.outside_dirty = self.outside
        self.n_dirty = np.bincount(self.cls, minlength=N_CLASSES).astype(float)
        self.n_dirty[0] += self.outside
        self.n_clean = np.zeros(N_CLASSES)
        # the seed counts as `seed_steps` steps already observed at the profile's rates
        self.writes = (np.bincount(self.cls, weights=self.count, minlength=N_CLASSES) if seeded
                       else np.zeros(N_CLASSES))
        self.exposure = self.n_dirty * seed_steps if seeded else np.zeros(N_CLASSES)
        # the same for clean pages only: what decides how fast clean pages are lost
        self.clean_writes, self.clean_exposure = np.zeros(N_CLASSES), np.zeros(N_CLASSES)

    def observe(self, sent: np.ndarray, cold_sent: int, written: np.ndarray) -> None:
        """One step: `sent` footprint pages (and `cold_sent` outside ones) became clean, then every
        page was exposed to writing for a step in its class, and `written` were written."""
        if sent.size:
            was = sent[self.dirty[sent]]
            moved = np.bincount(self.cls[was], minlength=N_CLASSES)
            self.dirty[was] = False
            self.n_dirty -= moved
            self.n_clean += moved
        if cold_sent:
            self.outside_dirty -= cold_sent
            self.n_dirty[0] -= cold_sent
            self.n_clean[0] += cold_sent
        self.writes *= self.keep
        self.exposure = self.exposure * self.keep + self.n_dirty + self.n_clean
        self.clean_writes *= self.keep
        self.clean_exposure = self.clean_exposure * self.keep + self.n_clean
        if written.size:
            old = self.cls[written]
            self.writes += np.bincount(old, minlength=N_CLASSES)
            was_dirty = self.dirty[written]
            cleaned = np.bincount(old[~was_dirty], minlength=N_CLASSES)
            self.clean_writes += cleaned
            self.n_dirty -= np.bincount(old[was_dirty], minlength=N_CLASSES)
            self.n_clean -= cleaned
            self.count[written] += 1.0
            new = class_of(self.count[written])
            self.cls[written] = new
            self.dirty[written] = True
            self.n_dirty += np.bincount(new, minlength=N_CLASSES)

    def rates(self) -> np.ndarray:
        """Per-class probability that a clean page (or one sent in the step) is written in the
        next step: measured on the class's clean pages, with the class's rate over all its pages
        (or the overall rate, where the class has no history) as a prior worth one page-step.

        Measured on clean pages because those are the pages the estimate is used for, and they
        are a selection: on a looped or periodic trace a page not written for a while is *more*
        likely to be written soon, and a rate over all of a class's pages underestimated how fast
        clean pages were lost (measured: 30 predicted against 55 pages a step on a looped trace,
        which kept the policy at a rate that could never catch up)."""
        total = float(self.exposure.sum())
        overall = float(self.writes.sum()) / total if total > 0 else 0.0
        prior = (self.writes + PRIOR_PAGE_STEPS * overall) / (self.exposure + PRIOR_PAGE_STEPS)
        r = (self.clean_writes + PRIOR_PAGE_STEPS * prior) / (self.clean_exposure + PRIOR_PAGE_STEPS)
        return np.clip(r, 0.0, 1.0 - 1e-9)

    def after_step(self, rates: np.ndarray, send: float, deferred: np.ndarray) -> tuple[float, float, float]:
        """(mean, variance, sent) of the dirty count after one more step that sends up to `send`
        dirty pages, lowest rate first, none of the `deferred` classes: sent pages and clean pages
        are each written with their class's rate (copy-then-dirty), the rest stay dirty. Pages
        are independent, so the variance is the sum of Bernoulli variances."""
        order = np.argsort(rates, kind="stable")
        order = order[~deferred[order]]
        avail = self.n_dirty[order]
        cum = np.cumsum(avail)
        took = np.clip(send - (cum - avail), 0.0, avail)
        sent = np.zeros(N_CLASSES)
        sent[order] = took
        exposed = self.n_clean + sent
        total_sent = float(took.sum())
        mean = float(self.n_dirty.sum()) - total_sent + float(rates @ exposed)
        var = float((rates * (1.0 - rates)) @ exposed)
        return mean, var, total_sent


def expected_shortfall(t: float, mean: float, var: float) -> float:
    """E[(t - X)+] for X ~ Normal(mean, var) (a sum of many independent page writes)."""
    if var <= 0:
        return max(t - mean, 0.0)
    sd = math.sqrt(var)
    z = (t - mean) / sd
    return (t - mean) * 0.5 * math.erfc(-z / math.sqrt(2.0)) + sd * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def stopping_threshold(mean: float, var: float, wait: float) -> float:
    """t with E[(t - X)+] = wait: for independent draws X at a cost of `wait` each, stopping at
    the first draw at or below t is optimal, and t is then the value of going on (the classic
    optimal-stopping threshold; docs/model.md, section 4). E[(t - X)+] grows with t and is at
    least t - mean, so t lies in [mean - 40 sd, mean + wait]."""
    if wait <= 0:
        return -math.inf
    sd = math.sqrt(max(var, 0.0))
    lo, hi = mean - 40.0 * sd - 1.0, mean + wait
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if expected_shortfall(mid, mean, var) < wait:
            lo = mid
        else:
            hi = mid
    return hi
