"""CALM, online (the CALM model, "CALM (variable bandwidth)" and "Online use").

At each step boundary CALM knows the clean count i and an estimate of p, takes b_i* =
argmin_b c_i(b) with c_i(b) = F(B - b) T(i -> i+1; b) (`replay.model.best_step_one`) and moves to
stop-and-copy once c_i* >= 1/B (one more clean page would cost more than the 1/B of downtime it
saves). b_i* rises as clean pages accumulate: low bandwidth first, higher later.

The model's other stop, "at i = M", is never reached literally in whole steps: the pages written
in every step stay dirty, so the clean count saturates near M - p M. Its discrete reading is used:
when a step can send every dirty page (n_dirty <= b_i*) CALM sends them; if the next step finds
that true again (pages were written meanwhile), it stops.

Estimating p online (model.md leaves the estimator open): the dirty log shows which pages are
written each step. The quantity the model needs is the chance that a *clean* page (including the
ones just sent) is written in a step, so CALM counts clean -> dirty transitions per clean
page-step. It weights them exponentially over the last `window` steps (default 20): on a real,
skewed trace the clean pool changes (first cold pages, later also hot pages just sent), and a
pooled all-time estimate would keep CALM believing in progress after the clean count has
saturated. The estimate starts from the overall write fraction (pages written / (M x steps)),
weighted like one step of the whole memory (M page-steps), and is 0 before the first step.
Passing `p` fixes it instead (an oracle, used by the tests against the uniform model).
"""

from __future__ import annotations

from replay.model import best_step_one
from replay.policies.base import Policy, Stop, View


class Calm(Policy):
    name = "calm"
    continuous = True

    def __init__(self, p: float | None = None, window: float = 20.0) -> None:
        if window < 1:
            raise ValueError("CALM's estimation window must be at least one step")
        self.p, self.window = p, window

    def begin(self, ctx) -> None:
        super().begin(ctx)
        self._dirtied = self._exposure = 0.0  # exponentially weighted sums
        self._seen = (0, 0)  # cumulative (clean_dirtied, clean_exposure) at the previous step
        self._final_pass = False

    def estimate_p(self, view: View) -> float:
        if self.p is not None:
            return self.p
        decay = 1.0 - 1.0 / self.window
        self._dirtied = decay * self._dirtied + (view.clean_dirtied - self._seen[0])
        self._exposure = decay * self._exposure + (view.clean_exposure - self._seen[1])
        self._seen = (view.clean_dirtied, view.clean_exposure)
        M = self.ctx.n_pages
        p_all = view.written_pages / (M * view.step) if view.step else 0.0
        return min((self._dirtied + M * p_all) / (self._exposure + M), 0.999999)

    def decide(self, view: View) -> float | Stop:
        ctx = self.ctx
        i = ctx.n_pages - view.n_dirty
        b, c = best_step_one(i, 1, self.estimate_p(view), ctx.bandwidth, ctx.cost)
        if not c < 1.0 / ctx.bandwidth:
            return Stop("CALM: one more clean page costs more than the downtime it saves")
        if view.n_dirty <= b:  # this step can send every dirty page: i reaches M ...
            if self._final_pass:  # ... which it already did one step ago: saturated, stop
                return Stop("CALM: every dirty page would go within this step (i = M)")
            self._final_pass = True
        else:
            self._final_pass = False
        return b

    def describe(self) -> dict:
        return {"p": self.p if self.p is not None else "online estimate", "window_steps": self.window}
