#!/usr/bin/env python3
"""The uniform model at its corner against the simulator: the slides' example (M = 10,000 pages,
p = 0.001, B = 100 pages per 20 ms unit) priced with calm's default cost, where the optimum stops
at Nmax = q M. Prints the model's Fixed and CALM costs (and what a clip at M would have said)
beside the mean simulated cost of the same plans over SEEDS uniform workloads, with its standard
error. Costs in time units. About 20 s for 60 seeds.

Usage: python scripts/corner_montecarlo.py [--seeds 60]
"""

from __future__ import annotations

import numpy as np
from calm.replay import model
from calm.replay.cost import in_pages, parse_cost
from calm.replay.defaults import DEFAULT_COST_SPEC
from calm.replay.dirty import UniformSource
from calm.replay.policies import Calm, Fixed
from calm.replay.simulator import simulate

from calm.core.argtypes import OneLineErrorParser, whole

M, P, B, UNIT = 10_000, 0.001, 100.0, 0.02


def main() -> int:
    ap = OneLineErrorParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=whole(minimum=2), default=60, help="workloads to average (default 60)")
    args = ap.parse_args()
    F = in_pages(parse_cost(DEFAULT_COST_SPEC), 4096, UNIT)
    plans = {"fixed": model.optimal_fixed(M, P, B, F).cost, "calm (true p)": model.calm_plan(M, P, B, F).cost}
    # what the model said when the clean count was clipped at M: the same plans, run to N = M
    at_m = {"fixed": float(model.fixed_cost(model.optimal_fixed(M, P, B, F).bandwidth, M, M, P, B, F))}
    print(f"{'plan':16}{'model':>10}{'simulated':>12}{'+- se':>8}{'model low by':>14}")
    for name, make in (("fixed", Fixed), ("calm (true p)", lambda: Calm(p=P))):
        costs = np.array([simulate(UniformSource(M, P, seed=s, step_seconds=UNIT), make(), B, F).cost / UNIT
                          for s in range(args.seeds)])
        mean, se = costs.mean(), costs.std(ddof=1) / np.sqrt(len(costs))
        print(f"{name:16}{plans[name]:>10.4f}{mean:>12.4f}{se:>8.4f}{(mean - plans[name]) / mean:>14.2%}")
    print(f"(a clip at M said {at_m['fixed']:.4f} for the fixed plan's bandwidth run to N = M)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
