#!/usr/bin/env python3
"""Online CALM with and without its issue-14 fixes, beside Fixed, on synthetic traces.

The traces are written with calm.workloads.synthetic (known per-page probabilities, 64 Ki pages,
0.1 s samples) in shapes that stress a migration policy: a hot set larger than a step's
bandwidth with cold memory around it, two milder hot/cold mixes, a hot set inside cold memory,
a ramp of uniform rates replayed in loops, and a 60 s ramp that the migration does not outlive. Each is replayed in four scenarios with calm replay's default cost
(F = mm1:rate=12,size=1MiB,sla=1s). Prints one row per (trace, scenario): the costs in seconds of
violated SLA of `Calm(finish_first_pass=False, follow_trend=False)` (the policy before issue 14's
fixes: the first-pass evidence check and the trend of saturated dirty counts), `Calm()` and
`Fixed()` (planned from the per-page profile). Deterministic (fixed seeds); about 30 s.
With --pages also the page-aware `CalmPages()` (calm-pages, learning online, no profile) and the
oracle: the hindsight-best fixed bandwidth and stop (`replay.runner.sweep_fixed`, 24 bandwidths,
what `calm replay --sweep 24` shows as the oracle row); several minutes.

Usage: python scripts/compare_calm_synthetic.py [--out DIR] [--pages]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from calm.replay.cost import in_pages, parse_cost
from calm.replay.dirty import TraceSource
from calm.replay.policies import Calm, CalmPages, Fixed
from calm.replay.runner import sweep_fixed
from calm.replay.simulator import simulate
from calm.replay.trace_map import map_trace

from calm.core.argtypes import OneLineErrorParser
from calm.workloads.synthetic import write_profile_trace

STEP = 0.1
RAMP = "phases:3:" + "/".join(f"uniform:{p:g}" for p in (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03,
                                                          0.05, 0.08, 0.12))
TRACES = {  # name: (profile, samples)
    "hotcold-0.5-0.5": ("hotcold:0.5:0.5:0.0", 200),
    "hotcold-0.2-0.3": ("hotcold:0.2:0.3:0.0005", 200),
    "hotcold-0.1-0.9": ("hotcold:0.1:0.9:0.0", 200),
    "hotcold-0.3-0.3": ("hotcold:0.3:0.3:0.0", 200),
    "hotcold-0.1-0.5": ("hotcold:0.1:0.5:0.0", 200),
    "ramp": (RAMP, 300),
    "ramp-60s": ("phases:1:" + "/".join(f"uniform:{p:.6f}" for p in np.linspace(0.0005, 0.03, 60)), 600),
}
ORACLE_POINTS = 24
WIDTHS = (13, 10, 10, 12, 10)  # the columns' widths
SCENARIOS = [(262144, 1e9), (131072, 512e6), (131072, 256e6), (65536, 256e6)]  # pages, bit/s


def main() -> int:
    ap = OneLineErrorParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="keep the traces in DIR (default: a temporary folder)")
    ap.add_argument("--pages", action="store_true", help="add calm-pages and the hindsight oracle")
    args = ap.parse_args()
    F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), 4096, STEP)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calm-compare-") as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        extra = f"{'calm-pages':>12}{'oracle':>10}" if args.pages else ""
        print(f"{'trace':18}{'scenario':>18}{'CALM before':>13}{'CALM':>10}{'Fixed':>10}{extra}")
        for name, (profile, samples) in TRACES.items():
            path = folder / f"{name}.h5"
            write_profile_trace(path, pages=65536, samples=samples, interval=STEP, profile=profile)
            mapped = map_trace(path)
            for pages, bps in SCENARIOS:
                src, B = TraceSource(mapped, pages), bps / 8 / 4096 * STEP
                policies = [Calm(finish_first_pass=False, follow_trend=False), Calm(), Fixed()]
                costs = [simulate(src, policy, B, F).cost for policy in policies + ([CalmPages()] if args.pages else [])]
                if args.pages:
                    costs.append(float(sweep_fixed(src, B, F, ORACLE_POINTS).simulated_cost.min()))
                scenario = f"{pages * 4096 >> 20}MiB@{bps / 1e6:g}Mbit"
                print(f"{name:18}{scenario:>18}" + "".join(f"{c:>{w}.4g}" for w, c in zip(WIDTHS, costs)),
                      flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
