"""Clark et al., NSDI 2005, dynamic rate limiting (docs/model.md, section 6).

Round 1 sends every page at the minimum rate. Each later round sends the pages dirtied during
the previous round at that round's dirtying rate (distinct pages written while it ran / its
length) plus the increment, never below the minimum (Clark's limiter works between the
administrator's minimum and maximum). Stop-and-copy, at the maximum rate, when that rate would
exceed the maximum or fewer than 256 KiB remain. Defaults: minimum 100 Mbit/s, increment
50 Mbit/s (what the slides' totals suggest), maximum = the scenario's bandwidth; on links slower
than 200 Mbit/s the default minimum and increment become B/2 and B/4 (explicit values that do
not fit the scenario are refused instead).

Clark's rule alone need not terminate: when the dirtying rate plus the increment stays below the
maximum and the hot set is above 256 KiB, rounds go on for ever (the simulator's time limit then
forces the stop, marked `forced`). Xen's implementation of it also capped the rounds;
`max_rounds` (off by default, as in docs/model.md) adds that cap.
"""

from __future__ import annotations

from calm.core.errors import CalmError
from calm.replay.policies.base import MigrationContext, Policy, Stop, View
from calm.replay.scenario import check_rate

DEFAULT_MIN_BPS = 100e6
DEFAULT_INCREMENT_BPS = 50e6


class Clark(Policy):
    name = "clark"

    def __init__(self, min_bps: float | None = None, max_bps: float | None = None,
                 increment_bps: float | None = None, stop_bytes: int = 256 * 1024,
                 max_rounds: int | None = None) -> None:
        if max_rounds is not None and max_rounds < 1:
            raise CalmError("Clark's maximum number of rounds must be at least 1")
        self.max_rounds = max_rounds
        if ((min_bps is not None and min_bps <= 0) or (increment_bps is not None and increment_bps < 0)
                or (max_bps is not None and max_bps <= 0)):
            raise CalmError("Clark's rates must be positive (the increment may be zero)")
        self.min_bps, self.max_bps, self.increment_bps, self.stop_bytes = min_bps, max_bps, increment_bps, stop_bytes

    def begin(self, ctx: MigrationContext) -> None:
        super().begin(ctx)
        self.max = ctx.bandwidth if self.max_bps is None else ctx.pages_per_step(self.max_bps)
        B = ctx.bandwidth
        self.min = min(ctx.pages_per_step(DEFAULT_MIN_BPS), B / 2) if self.min_bps is None else ctx.pages_per_step(self.min_bps)
        self.inc = (min(ctx.pages_per_step(DEFAULT_INCREMENT_BPS), B / 4) if self.increment_bps is None
                    else ctx.pages_per_step(self.increment_bps))
        to_bps = 8 * ctx.page_size / ctx.step_seconds
        check_rate(self.max * to_bps, B * to_bps, "Clark's maximum rate", "the scenario's bandwidth")
        check_rate(self.min * to_bps, self.max * to_bps, "Clark's minimum rate", "its maximum")
        self.rate = self.min

    def decide(self, view: View) -> float | Stop:
        if view.round_done:
            if view.n_dirty * self.ctx.page_size < self.stop_bytes:
                return Stop(f"Clark: fewer than {self.stop_bytes // 1024} KiB left")
            if self.max_rounds is not None and view.rounds >= self.max_rounds:
                return Stop(f"Clark: {self.max_rounds} rounds done")
            dirtying = view.last_round_dirtied / max(view.last_round_steps, 1)
            rate = max(dirtying + self.inc, self.min)
            if rate > self.max:
                return Stop("Clark: next round's rate would exceed the maximum")
            self.rate = rate
        return min(self.rate, self.max)

    def final_rate(self) -> float:
        return self.max

    def describe(self) -> dict:
        to_bps = 8 * self.ctx.page_size / self.ctx.step_seconds
        return {"min_bps": self.min * to_bps, "max_bps": self.max * to_bps,
                "increment_bps": self.inc * to_bps, "stop_bytes": self.stop_bytes, "max_rounds": self.max_rounds}
