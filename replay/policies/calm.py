"""CALM, online (the CALM model, "CALM (variable bandwidth)" and "Online use").

At each step boundary CALM knows the clean count i and estimates of the write probabilities,
takes b_i* = argmin_b c_i(b) with c_i(b) = F(B - b) T(i -> i+1; b) (`replay.model.best_step_one`)
and moves to stop-and-copy once c_i* >= 1/B (one more clean page would cost more than the 1/B of
downtime it saves). b_i* rises as clean pages accumulate: low bandwidth first, higher later.

The model's other stop, "at i = M", is never reached literally in whole steps: the pages written
in every step stay dirty, so the clean count saturates near M - p M. Its discrete reading: once a
step can send every dirty page (n_dirty <= b_i*), CALM is *saturated*, and each further step
only trades one step of pre-copy cost for a fresh draw of the dirty set, the pages written in
the step before. When to stop is then the classic optimal-stopping problem with a cost per
draw: stop at the first saturated step whose dirty count X is at or below the threshold t with
E[(t - X')+] = c_wait B, X' drawn from the dirty counts of the saturated steps seen so far and
c_wait the cost of one more step (F(B - b) while sending, F(B) for the idle rest). A costly
step gives a high threshold and CALM stops at the second saturated step (the earlier rule); a
negligible one (an M/M/1 service with bandwidth to spare) makes CALM wait for a quiet step,
which is what Clark's "fewer than 256 KiB left" gets by luck. Two draws say nothing about
the distribution (the first is the end of a pass, and the second is the lowest of two with
probability 1/2), so CALM stops on the threshold only after `min_draws` saturated steps
(default 10), or at once when one more step costs more than the whole dirty set's downtime.
The plateau rule below bounds the wait.

Estimating p online (model.md leaves the estimator open, and its uniform p is not enough on a
real trace). The uniform model's step N(t+1) = q (N(t) + b) applies one p to two different sets
of pages: the N(t) pages clean at the step's start, and the b pages sent in it. On a skewed
workload these differ by orders of magnitude: the pages still to send are the recently written
(hot) ones, the clean ones are cold. CALM therefore measures them apart from the dirty log and
uses N(t+1) = (1 - p_clean) N(t) + (1 - p_sent) b (`replay.model.time_between`, which is the
model exactly when the two are equal, as on a uniform workload):

- p_clean: clean -> dirty transitions of pages clean at a step's start, per such page-step,
  exponentially weighted over the last `clean_window` steps (default 100; None pools the whole
  migration, "what it has observed so far" in model.md), with a prior of M page-steps at the
  workload's overall write fraction. Long on purpose: a recording's writes come in bursts (a
  program's start-up that fills its heap, which a looped trace repeats every loop); an estimate
  over the last 20 steps is at its highest just after such a burst, and the stop rule, a first
  passage of c_i* over 1/B, then fired at the worst moment with every burst page dirty (5 s
  `collector.workload --profile service` recording at 256MiB@256Mbit: downtime 1.02 s against
  0.006 s for Clark). Pooled over everything it never adapts to the clean pool CALM has reached
  and, on such traces, never stopped (time limit).
- p_sent: the fraction of the pages sent in a step that are written in that same step,
  exponentially weighted over the last `window` steps (default 20) with a prior of one page at
  the overall write fraction (a heavier prior kept p_sent near 0.8 on a pure hot set). Windowed, because what is being sent
  changes: the first pass sends every page, later passes only the re-dirtied ones. This is what
  stops CALM when the clean count saturates on a hot set: the pages it sends come back dirty at
  once, p_sent -> 1, no bandwidth gains a clean page and c_i* = inf.

The model's "at i = M" stop has a second trace reading: the clean count saturates below M (the
looped bursts above re-dirty what CALM cleaned). When it has not passed its highest value for
`plateau` steps (default 300) CALM stops (None disables it). Window lengths are in trace steps
(0.1 s for `calm record`'s default interval) and were chosen on the recordings listed in the
replay report, not fitted per trace; model.md's uniform p cannot express either effect.

Passing `p` fixes both (an oracle, used by the tests against the uniform model).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from replay.model import best_step_one
from replay.policies.base import Policy, Stop, View

_P_MAX = 0.999999


class Calm(Policy):
    name = "calm"
    continuous = True

    def __init__(self, p: float | None = None, window: float = 20.0, clean_window: float | None = 100.0,
                 plateau: float | None = 300.0, min_draws: int = 10) -> None:
        if window < 1 or (clean_window is not None and clean_window < 1):
            raise ValueError("CALM's estimation windows must be at least one step")
        self.p, self.window, self.clean_window, self.plateau = p, window, clean_window, plateau
        self.min_draws = min_draws

    def begin(self, ctx) -> None:
        super().begin(ctx)
        self._sent_dirtied = self._sent = 0.0  # exponentially weighted sums
        self._seen = (0, 0)  # cumulative (sent_dirtied, total_sent) at the previous step
        self._cd = self._ce = 0.0
        self._cseen = (0, 0)
        self._saturated: deque[int] = deque(maxlen=int(self.plateau or 300))  # dirty counts then
        self._best_clean, self._best_step = -1, 0  # highest clean count so far, and when

    def estimate_p(self, view: View) -> tuple[float, float]:
        """(p_clean, p_sent) from the dirty log so far (see the module docstring)."""
        if self.p is not None:
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
        x = np.sort(np.fromiter(self._saturated, dtype=float))
        n = x.size
        # mean((t - X)+) at t = x[j] is (j + 1) x[j] / n - cumsum(x)[j] / n, increasing in j
        csum = np.cumsum(x)
        at_knots = (np.arange(1, n + 1) * x - csum) / n
        j = int(np.searchsorted(at_knots, budget, side="right")) - 1  # last knot within budget
        return float(x[j] + (budget - at_knots[j]) * n / (j + 1)), budget

    def describe(self) -> dict:
        return {"p": self.p if self.p is not None else "online estimate (p_clean pooled, p_sent windowed)",
                "window_steps": self.window, "clean_window_steps": self.clean_window,
                "plateau_steps": self.plateau, "min_draws": self.min_draws}
