"""Fixed: the optimal fixed bandwidth and stop point (docs/model.md, section 2), planned once
before the migration from the profile there is: on a recorded trace each page's own write
probability (`DirtySource.page_p`, planned by `replay.fixed_profile`), on a synthetic uniform
workload its p (the uniform model's `optimal_fixed`). `Fixed(profile=False)` plans a trace from
its uniform-equivalent p instead (dirty events / (pages x steps)), which is 10-300x off on skewed
traces: the slides' reading, kept for comparison.

Stop rule on a real trace (docs/model.md gives the plan in clean pages, which a skewed trace may
never reach): stop when the planned clean count N* is reached or the planned pre-copy time
T(0 -> N*; b*) has elapsed, whichever comes first. Either criterion can be given or disabled
explicitly (tests use a pure time stop, whose expected cost the closed form gives exactly).
"""

from __future__ import annotations

import math

from calm.replay.fixed_profile import plan_from_profile
from calm.replay.model import optimal_fixed
from calm.replay.policies.base import Hold, MigrationContext, Policy, Stop, View

_PLAN = object()  # "take it from the optimal plan"


class Fixed(Policy):
    name = "fixed"
    continuous = True

    def __init__(self, bandwidth: float | None = None, n_clean=_PLAN, precopy_time=_PLAN,
                 profile: bool = True) -> None:
        """bandwidth in pages/step (None: optimal); n_clean / precopy_time (steps): None disables;
        profile: plan from per-page probabilities where the workload has them."""
        self.bandwidth, self.n_clean, self.precopy_time = bandwidth, n_clean, precopy_time
        self.profile = profile

    def begin(self, ctx: MigrationContext) -> None:
        super().begin(ctx)
        self.from_profile = self.profile and ctx.page_p is not None
        if self.from_profile:
            self.plan = plan_from_profile(ctx.page_p, ctx.n_pages, ctx.bandwidth, ctx.cost)
        else:
            self.plan = optimal_fixed(ctx.n_pages, ctx.mean_p, ctx.bandwidth, ctx.cost)
        self.b = self.plan.bandwidth if self.bandwidth is None else min(float(self.bandwidth), ctx.bandwidth)
        self.stop_clean = self.plan.n_clean if self.n_clean is _PLAN else self.n_clean
        self.stop_time = self.plan.precopy_time if self.precopy_time is _PLAN else self.precopy_time

    def decide(self, view: View) -> Hold | Stop:
        if self.b <= 0:
            return Stop("Fixed: pre-copy does not pay, stop-and-copy at once")
        if self.stop_clean is not None and self.ctx.n_pages - view.n_dirty >= self.stop_clean:
            return Stop("Fixed: planned clean pages reached")
        stop_step = math.ceil(self.stop_time - 1e-9) if self.stop_time is not None else None
        if stop_step is not None and view.step >= stop_step:
            return Stop("Fixed: planned pre-copy time elapsed")
        return Hold(self.b, until_step=stop_step, until_clean=self.stop_clean)

    def describe(self) -> dict:
        return {"bandwidth_pages_per_step": self.b, "stop_clean": self.stop_clean,
                "stop_steps": self.stop_time, "planned_from": "per-page profile" if self.from_profile else "uniform p",
                "planned_p": self.ctx.mean_p, "planned_cost_steps": self.plan.cost}
