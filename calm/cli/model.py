"""`calm model`: the uniform analytic model (docs/model.md): the optimal fixed bandwidth and stop
point, and CALM's per-step bandwidths, for a uniform dirtying probability."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calm.core import argtypes
from calm.core.errors import UsageError

HELP = "the uniform analytic model: optimal fixed bandwidth and CALM's schedule"
DESCRIPTION = (
    "Evaluate the CALM cost model for a uniform dirtying probability: cost against fixed bandwidth, "
    "the optimal fixed bandwidth and stop point, and CALM's per-step bandwidths. Defaults reproduce "
    "the slides' example (M=10,000, p=0.001, B=100)."
)
# The slides' example is in abstract pages per time unit (B = 100 pages/s of 4 KiB, 3.3 Mbit/s):
# the replay's default F (1 MiB responses) would make every bandwidth violate the SLA there.
MODEL_DEFAULT_COST = "mm1:rate=15,size=16KiB,sla=1s"
DEFAULT_OUTPUT = "calm-model"


def configure(m: argparse.ArgumentParser) -> None:
    m.add_argument("--pages", type=argtypes.whole(minimum=1), metavar="M", help="pages to migrate (default 10000)")
    m.add_argument("--ram", type=argtypes.size(), metavar="SIZE", help="RAM to migrate instead of --pages, e.g. 1GiB")
    m.add_argument("--p", type=argtypes.probability(), default=0.001, metavar="P",
                   help="probability a page is written per time unit (default 0.001)")
    m.add_argument("--bandwidth-pages", type=argtypes.number(above=0), metavar="B",
                   help="total bandwidth in pages per time unit (default 100)")
    m.add_argument("--bandwidth", type=argtypes.rate(), metavar="RATE", help="total bandwidth as a rate instead, e.g. 1Gbit")
    m.add_argument("--time-unit", type=argtypes.duration(), default=1.0, metavar="DURATION",
                   help="length of the time unit (default 1s)")
    m.add_argument("--page-size", type=argtypes.size(), default=4096, metavar="SIZE", help="page size (default 4KiB)")
    m.add_argument("--cost", metavar="SPEC", default=MODEL_DEFAULT_COST,
                   help=f"cost function F, as for calm replay (default {MODEL_DEFAULT_COST})")
    m.add_argument("--batch", type=argtypes.whole(minimum=1), default=1, metavar="K",
                   help="CALM: pages per optimisation step (default 1)")
    m.add_argument("--points", type=argtypes.whole(minimum=2), default=400, metavar="N",
                   help="bandwidths on the fixed-cost curve (default 400)")
    m.add_argument("-o", "--output", metavar="DIR", default=DEFAULT_OUTPUT,
                   help=f"output directory (default {DEFAULT_OUTPUT}/)")
    m.add_argument("-f", "--force", action="store_true", help="overwrite the files of an earlier run")
    m.add_argument("--no-plots", action="store_true", help="write only the data files")
    m.add_argument("--json", action="store_true", help="print model.json's content on stdout")
    m.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def run(args: argparse.Namespace) -> int:
    if args.pages and args.ram:
        raise UsageError("give --pages or --ram, not both")
    if args.bandwidth_pages and args.bandwidth:
        raise UsageError("give --bandwidth-pages or --bandwidth, not both")
    from calm.core.paths import check_output_dir, prepare_output_dir
    from calm.core.errors import CalmError

    page_size, unit = args.page_size, args.time_unit
    if args.ram:
        if args.ram % page_size:
            raise CalmError(f"RAM of {args.ram} bytes is not a whole number of {page_size}-byte pages")
        n_pages = args.ram // page_size
    else:
        n_pages = args.pages or 10000
    out = Path(args.output)
    check_output_dir(out, force=args.force)

    import numpy as np

    from calm.replay import model
    from calm.replay.cost import in_pages, parse_cost
    from calm.replay.outputs import write_csv, write_json
    from calm.replay.scenario import rate_to_pages

    p = args.p
    bandwidth = rate_to_pages(args.bandwidth, page_size, unit) if args.bandwidth else (args.bandwidth_pages or 100.0)
    cost_fn = parse_cost(args.cost)
    F = in_pages(cost_fn, page_size, unit)
    fixed = model.optimal_fixed(n_pages, p, bandwidth, F)
    calm = model.calm_plan(n_pages, p, bandwidth, F, batch=args.batch)
    bs = np.linspace(bandwidth / args.points, bandwidth, args.points)
    costs = model.fixed_cost_curve(bs, n_pages, p, bandwidth, F)
    stops = model.best_stop(bs, n_pages, p, bandwidth, F)
    params = {"n_pages": n_pages, "p": p, "bandwidth_pages": bandwidth, "time_unit_s": unit,
              "page_size": page_size, "cost": cost_fn.describe(), "batch": args.batch}
    summary = {"tool": "calm model", "parameters": params, "fixed": fixed.to_dict(), "calm": calm.to_dict()}
    out = prepare_output_dir(out, force=args.force)
    files = [
        write_json(summary, out / "model.json"),
        write_csv([{"bandwidth": b, "stop_clean": n, "cost": c} for b, n, c in zip(bs, stops, costs)],
                  ("bandwidth", "stop_clean", "cost"), out / "fixed-cost.csv"),
        write_csv([{"clean": int(i), "pages": int(k), "bandwidth": b, "step_cost": c, "step_time": t}
                   for i, k, b, c, t in zip(calm.start, calm.size, calm.bandwidth, calm.step_cost, calm.step_time)],
                  ("clean", "pages", "bandwidth", "step_cost", "step_time"), out / "calm-schedule.csv"),
    ]
    if not args.no_plots:
        from calm.replay.plots import plot_model

        files += plot_model(bs, costs, fixed, calm, out,
                            f"Uniform model: M={n_pages}, p={p:g}, B={bandwidth:.4g} pages/unit, F={cost_fn.spec}")
    if args.json:
        print((out / "model.json").read_text(), end="")
    elif not args.quiet:
        print(f"M={n_pages} pages, p={p:g}, B={bandwidth:.6g} pages per {unit:g} s, F={cost_fn.spec}")
        print(f"{'':14}{'bandwidth':>22}{'clean N':>10}{'cost':>12}{'pre-copy':>12}{'downtime':>10}")
        print(f"{'optimal fixed':14}{fixed.bandwidth:>22.4f}{fixed.n_clean:>10.0f}{fixed.cost:>12.5g}"
              f"{fixed.precopy_time:>12.2f}{fixed.downtime:>10.3f}")
        b_range = f"{calm.bandwidth[0]:.3f} -> {calm.bandwidth[-1]:.3f}" if len(calm.bandwidth) else "-"
        print(f"{'CALM':14}{b_range:>22}{calm.n_clean:>10d}{calm.cost:>12.5g}"
              f"{calm.precopy_time:>12.2f}{calm.downtime:>10.3f}")
        print(f"(costs and times in time units of {unit:g} s; bandwidths in pages per time unit)")
    if not args.quiet:
        print(f"wrote {len(files)} files to {out}/", file=sys.stderr)
    return 0
