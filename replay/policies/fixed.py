"""Fixed: the optimal fixed bandwidth and stop point of the uniform model (docs/model.md,
section 2), planned once for the workload's uniform-equivalent p (`DirtySource.mean_p`: dirty
events / (pages x steps) over the trace mapped on this RAM).

Stop rule on a real trace (docs/model.md gives the plan in clean pages, which a skewed trace may
never reach): stop when the planned clean count N* is reached or the planned pre-copy time
T(0 -> N*; b*) has elapsed, whichever comes first. Either criterion can be given or disabled
explicitly (tests use a pure time stop, whose expected cost the closed form gives exactly).
"""

from __future__ import annotations

import math

from calm.replay.model import optimal_fixed
from calm.replay.policies.base import MigrationContext, Policy, Stop, View

_PLAN = object()  # "take it from the optimal plan"


class Fixed(Policy):
    name = "fixed"
    continuous = True

    def __init__(self, bandwidth: float | None = None, n_clean=_PLAN, precopy_time=_PLAN) -> None:
        """bandwidth in pages/step (None: optimal); n_clean / precopy_time (steps): None disables."""
        self.bandwidth, self.n_clean, self.precopy_time = bandwidth, n_clean, precopy_time

    def begin(self, ctx: MigrationContext) -> None:
        super().begin(ctx)
        self.plan = optimal_fixed(ctx.n_pages, ctx.mean_p, ctx.bandwidth, ctx.cost)
        self.b = self.plan.bandwidth if self.bandwidth is None else min(float(self.bandwidth), ctx.bandwidth)
        self.stop_clean = self.plan.n_clean if self.n_clean is _PLAN else self.n_clean
        self.stop_time = self.plan.precopy_time if self.precopy_time is _PLAN else self.precopy_time

    def decide(self, view: View) -> float | Stop:
        if self.b <= 0:
            return Stop("Fixed: pre-copy does not pay, stop-and-copy at once")
        if self.stop_clean is not None and self.ctx.n_pages - view.n_dirty >= self.stop_clean:
            return Stop("Fixed: planned clean pages reached")
        if self.stop_time is not None and view.step >= math.ceil(self.stop_time - 1e-9):
            return Stop("Fixed: planned pre-copy time elapsed")
        return self.b

    def describe(self) -> dict:
        return {"bandwidth_pages_per_step": self.b, "stop_clean": self.stop_clean,
                "stop_steps": self.stop_time, "planned_p": self.ctx.mean_p, "planned_cost_steps": self.plan.cost}
