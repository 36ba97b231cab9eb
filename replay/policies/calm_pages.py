"""calm-pages: a page-aware CALM that learns per-page write rates from the dirty log as it migrates
(the slides' future work; docs/model.md, section 4, "calm-pages").

The slides' CALM (`calm`) treats every page alike: one `p`, one clean count, and (online) stop
rules built from windows and thresholds. On a skewed workload that is where it fails (issue 14):
a hot set bigger than a step's bandwidth holds its pooled `p` high while the pages it has made
clean are cold; a ramp makes every saturated dirty count look worse than the last. calm-pages
keeps CALM's bandwidth rule and replaces what it assumes about pages:

- **What it knows.** Per-class write rates learnt online (`replay.page_rates.PageRates`: pages
  pooled by how often the log has shown them written, each class's rate measured on the last
  `memory_steps` steps), optionally seeded by a recorded profile (`profile_steps` > 0).
- **How fast** (a): the slides' CALM step, `replay.model.best_step_one(i, 1, p_clean, B, F,
  p_sent)`, with `p_clean` the mean learnt rate of the clean pages and `p_sent` that of the pages
  the step will send.
- **Which pages** (b): each pass sends the dirty pages lowest learnt rate first (the cold before
  the hot). A class is *deferred* to the copy phase when sending one of its pages costs more than
  it can save: a page costs `F(B - b) / b` of a step to send and saves at most `(1 - p) / B` of
  downtime, so classes with `p >= 1 - B F(B - b) / b` wait. Because the first pass would otherwise
  keep the RAM order it began with, the policy asks for a fresh sync at steps 1, 2, 4, 8, ...
  (O(footprint) each, O(log steps) of them).
- **When to stop** (c): optimal stopping on the dirty counts, from the same per-class rates, no
  window or threshold of its own. With `x` dirty pages now and `w` the cost of one more step in
  pages of downtime (`B (F(B - b) busy + F(B) idle)`), stop when `x <= w + E[V(X')]`, where `X'`
  is the dirty count after one more step (mean and variance from the classes: independent
  Bernoulli writes) and `V` the value of the state it reaches: once a step can send every
  non-deferred dirty page, each further step is a fresh draw of the dirty count and the optimal
  rule is a threshold `t*` with `E[(t* - X)+] = w` (`replay.page_rates.stopping_threshold`), so
  `V(y) = min(y, t*)` there; before that, `V(y) = y` (stop after the next step: the one-step
  look-ahead). A saturated state then stops exactly when `x <= t*`.

Where the truth is a uniform `p` every class learns that `p` and calm-pages is CALM with the
model's stopping threshold. Known limits: the rates follow a ramp with a lag of about
`memory_steps`; a hot page that is deferred never goes before the copy phase, even if it cools
(its class's measured rate falls, and it is sent again at the next sync).
"""

from __future__ import annotations

import math

import numpy as np

from calm.replay.model import best_step_one
from calm.replay.page_rates import PageRates, expected_shortfall, stopping_threshold
from calm.replay.passes import PageOrder
from calm.replay.policies.base import MigrationContext, PageLog, Policy, Stop, View

MEMORY_STEPS = 20.0  # the rates' memory: CALM's own p_sent window, set before any run, not fitted


class CalmPages(Policy):
    name = "calm-pages"
    continuous = True

    def __init__(self, memory_steps: float = MEMORY_STEPS, profile_steps: float = 0.0,
                 defer_hot: bool = True) -> None:
        """memory_steps: how many steps the learnt rates remember; profile_steps: seed the rates
        with the recorded per-page profile as if it had been observed for that many steps (0: learn
        online only, what a real engine without a profile can do); defer_hot: let the classes that
        do not pay wait for the copy phase (False: only order them last)."""
        if memory_steps < 1:
            raise ValueError("calm-pages: the rates' memory must be at least one step")
        if profile_steps < 0:
            raise ValueError("calm-pages: profile_steps must be >= 0")
        self.memory_steps, self.profile_steps, self.defer_hot = float(memory_steps), float(profile_steps), defer_hot

    def begin(self, ctx: MigrationContext) -> None:
        super().begin(ctx)
        if ctx.footprint is None:
            raise ValueError("calm-pages needs the simulator's footprint (pages it keeps state for)")
        seed = ctx.page_p if self.profile_steps > 0 else None
        self.rates = PageRates(ctx.n_pages, ctx.footprint, self.memory_steps, seed, self.profile_steps)
        self.b: float | None = None  # the last rate decided
        self._next_sync = 1

    # -- what the log shows ------------------------------------------------------------------
    def observe(self, sent: np.ndarray, cold_sent: int, written: np.ndarray) -> None:
        self.rates.observe(sent, cold_sent, written)

    def wants_sync(self, step: int) -> bool:
        if step < self._next_sync:
            return False
        self._next_sync = 2 * step
        return True

    def deferred(self, r: np.ndarray, b: float | None) -> np.ndarray:
        """Classes whose pages cost more to send than they can save (module docstring); class 0
        (never written, with the RAM outside the trace) always goes."""
        out = np.zeros(r.size, dtype=bool)
        if not self.defer_hot or not b:
            return out
        B = self.ctx.bandwidth
        out[1:] = r[1:] >= 1.0 - B * float(self.ctx.cost(B - b)) / b
        return out

    def order(self, log: PageLog) -> PageOrder:
        r = self.rates.rates()
        pr = r[self.rates.cls]
        pr[self.deferred(r, self.b)[self.rates.cls]] = np.inf
        return PageOrder(pr, cold=float(r[0]))

    # -- the decision ------------------------------------------------------------------------
    def _rate_of_next(self, r: np.ndarray, deferred: np.ndarray, n: float) -> float:
        """Mean learnt rate of the next `n` pages the policy would send (lowest rate first)."""
        order = np.argsort(r, kind="stable")
        order = order[~deferred[order]]
        avail = self.rates.n_dirty[order]
        took = np.clip(n - (np.cumsum(avail) - avail), 0.0, avail)
        total = float(took.sum())
        return float(r[order] @ took) / total if total > 0 else float(r[order[0]]) if order.size else 0.0

    def decide(self, view: View) -> float | Stop:
        ctx, model = self.ctx, self.rates
        B = ctx.bandwidth
        r = model.rates()
        deferred = self.deferred(r, self.b)
        clean = float(model.n_clean.sum())
        p_clean = float(r @ model.n_clean) / clean if clean > 0 else float(r[0])
        i = ctx.n_pages - view.n_dirty
        b = self.b or B
        for _ in range(2):  # p_sent depends on how many pages go: settle it once
            p_sent = self._rate_of_next(r, deferred, b)
            b, _c = best_step_one(i, 1, p_clean, B, ctx.cost, p_sent)
        self.b = b
        deferred = self.deferred(r, b)
        f_send, f_idle = float(ctx.cost(B - b)), float(ctx.cost(B))

        def wait(pages: float) -> float:  # one step's cost, in pages of downtime
            busy = min(pages / b, 1.0) if b > 0 else 1.0
            return B * (f_send * busy + f_idle * (1.0 - busy))

        mean, var, sent = model.after_step(r, b, deferred)
        t_star = self.saturated_threshold(r, deferred, b, wait)
        value_next = mean  # stop after the next step (one-step look-ahead)
        if math.isfinite(t_star) and mean - self._deferred_dirty(deferred) <= b:
            value_next = t_star - expected_shortfall(t_star, mean, var)  # E[min(X', t*)]
        if view.n_dirty <= wait(sent) + value_next:
            return Stop("calm-pages: stopping now costs no more than the expected cost of one more step")
        return b

    def _deferred_dirty(self, deferred: np.ndarray) -> float:
        return float(self.rates.n_dirty[deferred].sum())

    def saturated_threshold(self, r: np.ndarray, deferred: np.ndarray, b: float, wait) -> float:
        """t*: the value of a state where every step can send all non-deferred dirty pages
        (module docstring); inf when the non-deferred pages are written faster than b a step,
        so that state is out of reach."""
        model = self.rates
        pages = model.n_dirty + model.n_clean
        load = float(r[~deferred] @ pages[~deferred])  # non-deferred pages written a step
        if load > b:
            return math.inf
        mean, var, _sent = model.after_step(r, math.inf, deferred)
        return stopping_threshold(mean, var, wait(load))

    def describe(self) -> dict:
        return {"rates": f"learnt online per class of write count, memory {self.memory_steps:g} steps",
                "profile_steps": self.profile_steps, "defer_hot": self.defer_hot,
                "stop": "optimal stopping on the dirty count (threshold E[(t - X)+] = one step's cost)"}
