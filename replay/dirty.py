"""Dirty-page sources for the simulator: which footprint pages are written in each step.

A source is indexed by step, so every policy replayed against it sees exactly the same writes
(common random numbers: differences between policies are not sampling noise). Random sources
seed one generator per step from (seed, step) for that reason. Pages are named by their
footprint index; `layout` (`replay.layout.RamLayout`) says where each sits in the RAM.

- `TraceSource`: a `MappedTrace` on a RAM. With `n_pages` the footprint is spread over a
  hypothetical RAM of that many pages (`RAM@RATE`; a RAM smaller than the footprint is
  refused); with `n_pages=None` the RAM is the trace's own recorded memory (`trace@RATE`,
  `replay.own_memory`). Past the trace's end the trace is *looped* (step s replays trace step
  s mod S, the default) or *resampled*: each footprint page is written independently with its
  observed per-step frequency (count / S).
- `UniformSource`: the uniform model's synthetic trace: each step every page is written
  independently with probability p (time unit = one step).

A looped trace also answers, per page, "when is it next written" (`WriteIndex`): that is what
lets the simulator advance a steady phase in closed form instead of step by step.
"""

from __future__ import annotations

import numpy as np

from calm.core.errors import CalmError
from calm.replay.defaults import EXTEND_MODES
from calm.replay.layout import RamLayout, identity, spread
from calm.replay.trace_map import MappedTrace, check_fits

NEVER = np.iinfo(np.int64).max // 4  # "no write at or after this step"


class DirtySource:
    """Interface: `dirty(step)` -> distinct footprint pages written in that step."""

    layout: RamLayout
    page_size: int
    step_seconds: float
    loop_steps: int | None = None  # the writes repeat with this period (a looped trace)
    write_index: "WriteIndex | None" = None  # closed-form queries, for strides

    @property
    def n_pages(self) -> int:
        return self.layout.n_pages

    def dirty(self, step: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def mean_p(self) -> float:
        """The uniform-equivalent per-step write probability (what CALM's prior uses)."""
        raise NotImplementedError

    @property
    def page_p(self) -> np.ndarray | None:
        """Per-step write probability of each footprint page (the profile Fixed plans from), or
        None where every page has the same `mean_p` (a uniform workload)."""
        return None

    def describe(self) -> dict:
        raise NotImplementedError


class TraceSource(DirtySource):
    def __init__(self, mapped: MappedTrace, n_pages: int | None, extend: str = "loop", seed: int = 0) -> None:
        if extend not in EXTEND_MODES:
            raise CalmError(f"unknown trace extension '{extend}': use {' or '.join(EXTEND_MODES)}")
        self.mapped = mapped
        if n_pages is None:
            from calm.replay.own_memory import own_layout
            self.layout = own_layout(mapped)
        else:
            check_fits(mapped.footprint, int(n_pages), mapped.page_size)
            self.layout = spread(mapped.footprint, int(n_pages))
        self.page_size = mapped.page_size
        self.step_seconds = mapped.step_seconds
        self.extend = extend
        self.seed = seed
        self._p = mapped.write_counts / mapped.n_steps
        if extend == "loop":
            self.loop_steps = mapped.n_steps
            self.write_index = WriteIndex(mapped)

    def dirty(self, step: int) -> np.ndarray:
        m = self.mapped
        if step < m.n_steps or self.extend == "loop":
            return m.step_pages(step % m.n_steps)
        rng = np.random.default_rng([self.seed, step])
        return np.flatnonzero(rng.random(m.footprint) < self._p)

    @property
    def mean_p(self) -> float:
        return self.mapped.mean_p(self.n_pages)

    @property
    def page_p(self) -> np.ndarray:
        return self._p

    def describe(self) -> dict:
        return {"kind": "trace", **self.mapped.describe(), "extend": self.extend, "n_pages": self.n_pages,
                "mean_p": self.mean_p, **self.layout.describe()}


class UniformSource(DirtySource):
    def __init__(self, n_pages: int, p: float, *, seed: int = 0, page_size: int = 4096,
                 step_seconds: float = 1.0) -> None:
        if not 0.0 <= p < 1.0:
            raise CalmError(f"uniform dirtying probability {p:g} must be in [0, 1)")
        if not step_seconds > 0:
            raise CalmError(f"step length {step_seconds:g} s must be positive")
        self.layout = identity(int(n_pages))
        self.p, self.seed = float(p), seed
        self.page_size, self.step_seconds = page_size, float(step_seconds)

    def dirty(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        k = rng.binomial(self.n_pages, self.p)
        return np.sort(rng.choice(self.n_pages, size=k, replace=False)).astype(np.int64)

    @property
    def mean_p(self) -> float:
        return self.p

    def describe(self) -> dict:
        return {"kind": "uniform", "p": self.p, "seed": self.seed, "n_pages": self.n_pages,
                "page_size": self.page_size, "step_seconds": self.step_seconds}


class WriteIndex:
    """Per footprint page, the trace steps in which it is written (the trace's CSR transposed),
    for questions about a looped trace asked for many pages at once: the next write at or after
    a step, the writes in a range of steps, the last write before a step. O(log E) per page."""

    def __init__(self, mapped: MappedTrace) -> None:
        S = mapped.n_steps
        per_step = np.diff(mapped.step_offsets)
        step_of_event = np.repeat(np.arange(S, dtype=np.int64), per_step)
        order = np.argsort(mapped.pages, kind="stable")  # by page, steps ascending within a page
        self.S = S
        self.steps = step_of_event[order]
        self.key = mapped.pages[order].astype(np.int64) * S + self.steps
        self.start = np.concatenate(([0], np.cumsum(mapped.write_counts)))
        self.counts = mapped.write_counts
        self._written_before = np.concatenate(([0], np.cumsum(per_step)))  # dirty-log entries

    def next_write(self, pages: np.ndarray, t) -> np.ndarray:
        """Absolute step of each page's first write at or after step t (a scalar or one step per
        page); NEVER if the page is never written."""
        out = np.full(pages.shape, NEVER, dtype=np.int64)
        if self.steps.size == 0:
            return out
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), pages.shape)
        u = t % self.S
        base = t - u
        p = np.searchsorted(self.key, pages * self.S + u)
        last = self.steps.size - 1
        here = p < self.start[pages + 1]
        out = np.where(here, base + self.steps[np.minimum(p, last)], out)
        later = ~here & (self.counts[pages] > 0)
        return np.where(later, base + self.S + self.steps[np.minimum(self.start[pages], last)], out)

    def writes_before(self, pages: np.ndarray, t: int) -> np.ndarray:
        """How many steps in [0, t) wrote each page."""
        u = t % self.S
        p = np.searchsorted(self.key, pages * self.S + u)
        return (t // self.S) * self.counts[pages] + (p - self.start[pages])

    def last_write_before(self, pages: np.ndarray, t: int) -> np.ndarray:
        """Absolute step of each page's last write before step t, -1 if none."""
        u = t % self.S
        base = t - u
        p = np.searchsorted(self.key, pages * self.S + u) - 1
        this_loop = p >= self.start[pages]
        out = np.full(pages.shape, -1, dtype=np.int64)
        out[this_loop] = base + self.steps[p[this_loop]]
        if base > 0:
            prev = ~this_loop & (self.counts[pages] > 0)
            out[prev] = base - self.S + self.steps[self.start[pages[prev] + 1] - 1]
        return out

    def written_between(self, t0: int, t1: int) -> int:
        """Dirty-log entries (pages written, summed over steps) in steps [t0, t1)."""
        def upto(t: int) -> int:
            return (t // self.S) * int(self._written_before[-1]) + int(self._written_before[t % self.S])
        return upto(t1) - upto(t0)

    def written_per_step(self, t0: int, k: int) -> np.ndarray:
        """Dirty-log entries of each step t0 .. t0 + k - 1."""
        idx = (t0 + np.arange(k, dtype=np.int64)) % self.S
        return np.diff(self._written_before)[idx]
