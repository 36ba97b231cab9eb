"""QEMU's migration.c pre-copy (docs/model.md, section 6).

Sends at `max-bandwidth` in passes over the dirty bitmap (one bitmap sync per pass) and completes
as soon as the remaining dirty bytes fit in `max-bandwidth x downtime-limit` (default 300 ms),
checked at every step boundary like QEMU's migration thread checks every iteration. The default
max-bandwidth here is the scenario's whole bandwidth B (QEMU's own default is an arbitrary
constant that would make scenarios incomparable). Without auto-converge a workload that dirties
faster than max-bandwidth never converges: the simulator's time limit then forces the stop and
the result is marked `forced`.
"""

from __future__ import annotations

from calm.core.errors import CalmError
from calm.replay.policies.base import MigrationContext, Policy, Stop, View
from calm.replay.scenario import check_rate


class Qemu(Policy):
    name = "qemu"

    def __init__(self, max_bandwidth_bps: float | None = None, downtime_limit_s: float = 0.3) -> None:
        if downtime_limit_s <= 0:
            raise CalmError("QEMU downtime-limit must be positive")
        self.max_bandwidth_bps, self.downtime_limit_s = max_bandwidth_bps, downtime_limit_s

    def begin(self, ctx: MigrationContext) -> None:
        super().begin(ctx)
        self.rate = ctx.bandwidth if self.max_bandwidth_bps is None else ctx.pages_per_step(self.max_bandwidth_bps)
        to_bps = 8 * ctx.page_size / ctx.step_seconds
        check_rate(self.rate * to_bps, ctx.bandwidth * to_bps, "QEMU max-bandwidth", "the scenario's bandwidth")
        self.threshold_pages = self.rate * self.downtime_limit_s / ctx.step_seconds

    def decide(self, view: View) -> float | Stop:
        if view.n_dirty <= self.threshold_pages:
            return Stop(f"QEMU: remaining dirty pages fit in the {self.downtime_limit_s * 1000:g} ms downtime limit")
        return self.rate

    def final_rate(self) -> float:
        return self.rate

    def describe(self) -> dict:
        return {"max_bandwidth_bps": self.rate * 8 * self.ctx.page_size / self.ctx.step_seconds,
                "downtime_limit_s": self.downtime_limit_s}
