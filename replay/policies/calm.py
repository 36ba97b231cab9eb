"""CALM, online: the slides' per-clean-page bandwidth choice driven by the dirty log
(docs/model.md, sections 3 and 4).

At each step boundary CALM takes b_i* = argmin_b F(B - b) T(i -> i+1; b) with two write
probabilities measured from the dirty log (`estimate_p`: p_clean for pages already clean, p_sent
for pages it has just sent), and stops when one more clean page costs more than the 1/B of
downtime it saves, when saturated on an optimal-stopping threshold (`stop_threshold`), or when
the clean count has reached no new high for `plateau` steps. The window lengths were chosen on
the project's own recordings (docs/model.md, section 4).

In the first pass the "one more clean page does not pay" stop is checked again with p_clean
under a prior worth one step of sending instead of M page-steps (`finish_first_pass`): the pages
made clean so far are often the cold ones, and a prior at the mean p of a workload with a big
hot set otherwise stops the migration with most of the RAM never sent (issue 14, mechanism (a);
tests/test_replay_calm_online.py). Once saturated, a significant upward trend of the dirty
counts moves the optimal-stopping threshold to the counts to come (`next_draws`, mechanism (b)). Passing `p` fixes both probabilities
(an oracle, used by the tests against the uniform model).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from calm.replay.model import best_step_one
from calm.replay.policies.base import Policy, Stop, View

_P_MAX = 0.999999
TREND_DRAWS = 30  # saturated dirty counts a trend is fitted on


class Calm(Policy):
    name = "calm"
    continuous = True

    def __init__(self, p: float | None = None, window: float = 20.0, clean_window: float | None = 100.0,
                 plateau: float | None = 300.0, min_draws: int = 10, finish_first_pass: bool = True,
                 follow_trend: bool = True) -> None:
        if window < 1 or (clean_window is not None and clean_window < 1):
            raise ValueError("CALM's estimation windows must be at least one step")
        self.p, self.window, self.clean_window, self.plateau = p, window, clean_window, plateau
        self.min_draws = min_draws
        self.finish_first_pass = finish_first_pass
        self.follow_trend = follow_trend

    def begin(self, ctx) -> None:
        super().begin(ctx)
        self._sent_dirtied = self._sent = 0.0  # exponentially weighted sums
        self._seen = (0, 0)  # cumulative (sent_dirtied, total_sent) at the previous step
        self._cd = self._ce = 0.0
        self._cseen = (0, 0)
        self._saturated: deque[int] = deque(maxlen=int(self.plateau or 300))  # dirty counts then
        self._best_clean, self._best_step = -1, 0  # highest clean count so far, and when
        self._p_clean_evidence = 0.0

    def estimate_p(self, view: View) -> tuple[float, float]:
        """(p_clean, p_sent) from the dirty log so far (see the module docstring)."""
        if self.p is not None:
            self._p_clean_evidence = self.p
            return self.p, self.p
        M = self.ctx.n_pages
        prior = view.written_pages / (M * view.step) if view.step else 0.0
        clean_dirtied = view.clean_dirtied - view.sent_dirtied
        clean_exposure = view.clean_exposure - view.total_sent
        if self.clean_window is None:
            p_clean = (clean_dirtied + M * prior) / (clean_exposure + M)
        else:
            dc = 1.0 - 1.0 / self.clean_window
            self._cd = dc * self._cd + clean_dirtied - self._cseen[0]
            self._ce = dc * self._ce + clean_exposure - self._cseen[1]
            self._cseen = (clean_dirtied, clean_exposure)
            p_clean = (self._cd + M * prior) / (self._ce + M)
        # the same evidence under a prior worth one step of sending (B page-steps), not M
        cd, ce = (clean_dirtied, clean_exposure) if self.clean_window is None else (self._cd, self._ce)
        self._p_clean_evidence = min((cd + self.ctx.bandwidth * prior) / (ce + self.ctx.bandwidth), _P_MAX)
        decay = 1.0 - 1.0 / self.window
        self._sent_dirtied = decay * self._sent_dirtied + (view.sent_dirtied - self._seen[0])
        self._sent = decay * self._sent + (view.total_sent - self._seen[1])
        self._seen = (view.sent_dirtied, view.total_sent)
        p_sent = (self._sent_dirtied + prior) / (self._sent + 1.0)
        return min(p_clean, _P_MAX), min(p_sent, 1.0)

    def decide(self, view: View) -> float | Stop:
        ctx = self.ctx
        i = ctx.n_pages - view.n_dirty
        if i > self._best_clean:
            self._best_clean, self._best_step = i, view.step
        elif self.plateau is not None and view.step - self._best_step >= self.plateau:
            return Stop(f"CALM: clean count saturated (no new high in {self.plateau:g} steps)")
        p_clean, p_sent = self.estimate_p(view)
        b, c = best_step_one(i, 1, p_clean, ctx.bandwidth, ctx.cost, p_sent)
        if not c < 1.0 / ctx.bandwidth and self.finish_first_pass and view.rounds <= 1:
            # Still in the first pass: the prior (M page-steps at the mean p) may be what says so,
            # while the pages already clean are the cold ones and stay clean. Ask the evidence.
            b, c = best_step_one(i, 1, self._p_clean_evidence, ctx.bandwidth, ctx.cost, p_sent)
        if not c < 1.0 / ctx.bandwidth:
            return Stop("CALM: one more clean page costs more than the downtime it saves")
        if view.n_dirty <= b:  # this step can send every dirty page: i reaches M (saturated)
            self._saturated.append(view.n_dirty)
            t, budget = self.stop_threshold(b, view.n_dirty)
            enough = len(self._saturated) >= self.min_draws or view.n_dirty <= budget
            if len(self._saturated) >= 2 and enough and view.n_dirty <= t:
                return Stop("CALM: i = M (all dirty pages fit in a step), few enough to stop on")
        return b

    def stop_threshold(self, b: float, n_dirty: int) -> tuple[float, float]:
        """(t, c_wait B): t with mean((t - X)+) = c_wait B over the saturated dirty counts X, and
        c_wait B, one more step's cost in pages of downtime (module docstring)."""
        ctx = self.ctx
        B = ctx.bandwidth
        busy = min(n_dirty / b, 1.0) if b > 0 else 1.0
        c_wait = float(ctx.cost(B - b)) * busy + float(ctx.cost(B)) * (1.0 - busy)
        budget = c_wait * B
        x = np.sort(self.next_draws())
        n = x.size
        # mean((t - X)+) at t = x[j] is (j + 1) x[j] / n - cumsum(x)[j] / n, increasing in j
        csum = np.cumsum(x)
        at_knots = (np.arange(1, n + 1) * x - csum) / n
        j = int(np.searchsorted(at_knots, budget, side="right")) - 1  # last knot within budget
        return float(x[j] + (budget - at_knots[j]) * n / (j + 1)), budget

    def next_draws(self) -> np.ndarray:
        """What the next saturated dirty count may be: the counts seen so far, or, when the last
        `TREND_DRAWS` of them rise significantly (slope above 3 standard errors: a dirty rate
        that ramps up), their residuals around the fitted line moved to its next value. Drawn
        from the past alone, a rising series always looks worse than what came before, the
        threshold never fires, and CALM waits into the peak (issue 14, mechanism (b))."""
        x = np.fromiter(self._saturated, dtype=float)
        if not self.follow_trend or x.size < TREND_DRAWS:
            return x
        y = x[-TREND_DRAWS:]
        k = np.arange(TREND_DRAWS, dtype=float) - (TREND_DRAWS - 1) / 2.0
        slope = float(k @ (y - y.mean()) / (k @ k))
        fit = y.mean() + slope * k
        resid = y - fit
        se = float(np.sqrt((resid @ resid) / (TREND_DRAWS - 2) / (k @ k)))
        if not slope > 3.0 * se:
            return x
        return np.maximum(resid + y.mean() + slope * (k[-1] + 1.0), 0.0)

    def describe(self) -> dict:
        return {"p": self.p if self.p is not None else "online estimate (p_clean pooled, p_sent windowed)",
                "window_steps": self.window, "clean_window_steps": self.clean_window,
                "plateau_steps": self.plateau, "min_draws": self.min_draws,
                "finish_first_pass": self.finish_first_pass, "follow_trend": self.follow_trend}
