"""Dirty-page sources for the simulator: which RAM pages are written in each step.

A source is indexed by step, so every policy replayed against it sees exactly the same writes
(common random numbers: differences between policies are not sampling noise). Random sources
seed one generator per step from (seed, step) for that reason.

- `TraceSource`: a `MappedTrace` placed on a RAM of M pages. The F footprint pages (the distinct
  pages the trace ever dirtied) go to RAM pages floor(j M / F), j = 0..F-1, in (process, address)
  order; the other M - F pages are never written, so pre-copy copies them once and they stay
  clean. A RAM smaller than F pages is refused. Past the trace's end the trace is *looped*
  (step s replays trace step s mod S, the default) or *resampled*: each footprint page is written
  independently with its observed per-step frequency (count / S).
- `UniformSource`: the uniform model's synthetic trace: each step every page is written
  independently with probability p (time unit = one step).
"""

from __future__ import annotations

import numpy as np

from calm.core.errors import CalmError
from calm.replay.defaults import EXTEND_MODES
from calm.replay.trace_map import MappedTrace



class DirtySource:
    """Interface: `dirty(step)` -> int64 array of distinct RAM page indices written in that step."""

    n_pages: int
    page_size: int
    step_seconds: float

    def dirty(self, step: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def mean_p(self) -> float:
        """The uniform-equivalent per-step write probability (what Fixed and CALM's prior use)."""
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


class TraceSource(DirtySource):
    def __init__(self, mapped: MappedTrace, n_pages: int, extend: str = "loop", seed: int = 0) -> None:
        if extend not in EXTEND_MODES:
            raise CalmError(f"unknown trace extension '{extend}': use {' or '.join(EXTEND_MODES)}")
        self.mapped = mapped
        self.n_pages = int(n_pages)
        self.page_size = mapped.page_size
        self.step_seconds = mapped.step_seconds
        self.extend = extend
        self.seed = seed
        self._ram = mapped.ram_index(self.n_pages)
        self._p = mapped.write_counts / mapped.n_steps

    def dirty(self, step: int) -> np.ndarray:
        m = self.mapped
        if step < m.n_steps or self.extend == "loop":
            return self._ram[m.step_pages(step % m.n_steps)]
        rng = np.random.default_rng([self.seed, step])
        return self._ram[np.flatnonzero(rng.random(m.footprint) < self._p)]

    @property
    def mean_p(self) -> float:
        return self.mapped.mean_p(self.n_pages)

    def describe(self) -> dict:
        return {"kind": "trace", **self.mapped.describe(), "extend": self.extend, "n_pages": self.n_pages,
                "mean_p": self.mean_p}


class UniformSource(DirtySource):
    def __init__(self, n_pages: int, p: float, *, seed: int = 0, page_size: int = 4096,
                 step_seconds: float = 1.0) -> None:
        if not 0.0 <= p < 1.0:
            raise CalmError(f"uniform dirtying probability {p:g} must be in [0, 1)")
        if not step_seconds > 0:
            raise CalmError(f"step length {step_seconds:g} s must be positive")
        self.n_pages, self.p, self.seed = int(n_pages), float(p), seed
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
