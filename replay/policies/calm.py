"""CALM, online (the CALM model, "CALM (variable bandwidth)" and "Online use").

At each step boundary CALM knows the clean count i and an estimate of p, takes b_i* =
argmin_b c_i(b) with c_i(b) = F(B - b) T(i -> i+1; b) (`replay.model.best_step_one`) and moves to
stop-and-copy once c_i* >= 1/B (one more clean page would cost more than the 1/B of downtime it
saves). b_i* rises as clean pages accumulate: low bandwidth first, higher later.

The model's other stop, "at i = M", is never reached literally in whole steps: the pages written
in every step stay dirty, so the clean count saturates near M - p M. Its discrete reading is used:
stop once the dirty pages would all go within this step (n_dirty <= b_i*).

Estimating p online (model.md leaves the estimator open): the dirty log shows which pages are
written each step. The quantity the model needs is the chance that a *clean* page is written in a
step, so CALM pools clean -> dirty transitions over clean page-steps seen so far. Early on few
pages are clean, so the pooled estimate is shrunk towards the overall write fraction (pages
written / (M x steps)) with the weight of one step of the whole memory (M page-steps):
    p_hat = (clean_dirtied + M p_all) / (clean_exposure + M).
Before the first step nothing is known and p_hat = 0. Passing `p` fixes it (an oracle, for tests).
"""

from __future__ import annotations

from replay.model import best_step_one
from replay.policies.base import Policy, Stop, View


class Calm(Policy):
    name = "calm"
    continuous = True

    def __init__(self, p: float | None = None) -> None:
        self.p = p

    def estimate_p(self, view: View) -> float:
        if self.p is not None:
            return self.p
        M = self.ctx.n_pages
        p_all = view.written_pages / (M * view.step) if view.step else 0.0
        return min((view.clean_dirtied + M * p_all) / (view.clean_exposure + M), 0.999999)

    def decide(self, view: View) -> float | Stop:
        ctx = self.ctx
        i = ctx.n_pages - view.n_dirty
        b, c = best_step_one(i, 1, self.estimate_p(view), ctx.bandwidth, ctx.cost)
        if not c < 1.0 / ctx.bandwidth:
            return Stop("CALM: one more clean page costs more than the downtime it saves")
        if view.n_dirty <= b:
            return Stop("CALM: every dirty page would go within this step (i = M)")
        return b

    def describe(self) -> dict:
        return {"p": self.p if self.p is not None else "online estimate"}
