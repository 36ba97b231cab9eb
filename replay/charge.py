"""What a migration's cost charges (docs/model.md, "What the cost charges"): the slides'
`absolute` violation time, or only the `extra` violations the migration adds, plus an optional
price per second of migration.

- `absolute`: cost rate F(B - b) while pre-copying, 1 during the downtime (the slides; default).
- `extra`: F(B - b) - F(B) and 1 - F(B): a service that misses its SLA at full bandwidth is not
  billed for the misses that happen anyway.
- `price_per_s` (default 0) adds a constant rate for every second the migration runs, downtime
  included (a reserved destination, dirty-logging overhead), so time is not free where F(B - b)
  is negligible. Its unit is the cost's: seconds of violated SLA per second of migration.

Every policy and the uniform model assume a downtime rate of 1 and a cost rate G(Bs) with
G(0) = 1. So the charge is applied by scaling: with d = 1 - [extra] F(B) + price, policies see
G(Bs) = (F(Bs) - [extra] F(B) + price) / d, which is non-increasing with G(0) = 1, and their
costs are multiplied back by d (`scale_result`). A policy therefore plans for the objective it is
judged by, and `absolute` with no price is exactly F.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from calm.replay.cost import PagesCost
from calm.replay.sim_result import SimResult

from calm.core.errors import CalmError

CHARGES = ("absolute", "extra")


@dataclass(frozen=True)
class Charge:
    mode: str = "absolute"
    price_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in CHARGES:
            raise CalmError(f"unknown charge '{self.mode}': choose from {', '.join(CHARGES)}")
        if not (self.price_per_s >= 0 and np.isfinite(self.price_per_s)):
            raise CalmError(f"the price per second of migration must be a finite number >= 0 (got {self.price_per_s:g})")

    @property
    def is_default(self) -> bool:
        return self.mode == "absolute" and self.price_per_s == 0

    def downtime_rate(self, cost: PagesCost, bandwidth: float) -> float:
        """d: the cost rate of a second of downtime under this charge."""
        base = float(cost(bandwidth)) if self.mode == "extra" else 0.0
        return 1.0 - base + self.price_per_s

    def apply(self, cost: PagesCost, bandwidth: float) -> tuple[PagesCost, float]:
        """(G, d): the normalised cost rate the policies see at total bandwidth B, and the factor
        that turns their costs back into this charge's seconds."""
        if self.is_default:
            return cost, 1.0
        d = self.downtime_rate(cost, bandwidth)
        if d <= 0:  # extra charge, no price, and F(B) = 1: the migration adds nothing
            return (lambda bs: np.zeros_like(np.asarray(bs, dtype=float))), 0.0
        base = float(cost(bandwidth)) if self.mode == "extra" else 0.0

        def charged(bs):
            return np.maximum(np.asarray(cost(bs), dtype=float) - base, 0.0) / d + self.price_per_s / d

        return charged, d

    def describe(self) -> dict:
        return {"charge": self.mode, "price_per_s": self.price_per_s}


def scale_result(result: SimResult, factor: float) -> SimResult:
    """A result whose costs are in the normalised units of `Charge.apply`, in the charge's own."""
    if factor == 1.0:
        return result
    return replace(result, cost=result.cost * factor, precopy_cost=result.precopy_cost * factor,
                   cost_so_far=result.cost_so_far * factor)
