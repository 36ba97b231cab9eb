"""`calm model`: the uniform analytic model (docs/model.md): the optimal fixed bandwidth and stop
point, and CALM's per-step bandwidths, for a uniform dirtying probability."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calm.cli.output_options import add_output_options
from calm.core import argtypes
from calm.core.errors import UsageError
from calm.replay.defaults import DEFAULT_COST_SPEC

HELP = "the uniform analytic model: optimal fixed bandwidth and CALM's schedule"
DESCRIPTION = (
    "Evaluate the CALM cost model for a uniform dirtying probability: cost against fixed bandwidth, "
    "the optimal fixed bandwidth and stop point, and CALM's per-step bandwidths. Defaults are the "
    "slides' example (M=10,000 pages, p=0.001 and B=100 pages per time unit) with a time unit of "
    "20 ms: 39 MiB over a 163.84 Mbit/s link, priced with calm replay's default cost."
)
# One default cost for `calm model` and `calm replay` (calm.replay.defaults.DEFAULT_COST_SPEC: a
# service that needs about 100 Mbit/s). The slides' example is in abstract units; read with a
# 1 s time unit its link would be 3.3 Mbit/s, where that service violates its SLA at any
# bandwidth. A 20 ms unit makes the same numbers a 163.84 Mbit/s link, in the range of the
# slides' scenarios, and keeps their figure's shape: the cost falls, then rises, with the
# bandwidth (measured: optimal fixed 20.6 Mbit/s, CALM 8.4 -> 24.8 Mbit/s).
DEFAULT_TIME_UNIT = 0.02
DEFAULT_OUTPUT = "calm-model"
MAX_PAGES = 1 << 48  # 1 EiB of 4 KiB pages
MAX_POINTS = 100_000  # points of the fixed-cost curve: finer than any plot, a typo beyond


def configure(m: argparse.ArgumentParser) -> None:
    m.add_argument("--pages", type=argtypes.whole(minimum=1, maximum=MAX_PAGES), metavar="M", help="pages to migrate (default 10000)")
    m.add_argument("--ram", type=argtypes.size(), metavar="SIZE", help="RAM to migrate instead of --pages, e.g. 1GiB")
    m.add_argument("--p", type=argtypes.probability(), default=0.001, metavar="P",
                   help="probability a page is written per time unit (default 0.001)")
    m.add_argument("--bandwidth-pages", type=argtypes.number(above=0), metavar="B",
                   help="total bandwidth in pages per time unit (default 100)")
    m.add_argument("--bandwidth", type=argtypes.rate(), metavar="RATE", help="total bandwidth as a rate instead, e.g. 1Gbit")
    m.add_argument("--time-unit", type=argtypes.duration(), default=DEFAULT_TIME_UNIT, metavar="DURATION",
                   help=f"length of the time unit that --p and --bandwidth-pages count in "
                        f"(default {DEFAULT_TIME_UNIT * 1000:g}ms)")
    m.add_argument("--page-size", type=argtypes.size(), default=4096, metavar="SIZE", help="page size (default 4KiB)")
    m.add_argument("--cost", metavar="SPEC", default=DEFAULT_COST_SPEC,
                   help=f"cost function F, as for calm replay (default {DEFAULT_COST_SPEC})")
    m.add_argument("--charge", choices=("absolute", "extra"), default="absolute",
                   help="what the cost charges: every SLA violation (absolute, the slides' default) or only "
                        "those the migration adds to what the service violates at the full bandwidth (extra)")
    m.add_argument("--price-per-second", type=argtypes.number(minimum=0.0, maximum=1e6), default=0.0, metavar="X",
                   help="also charge X seconds of violated SLA per second of migration (default 0)")
    m.add_argument("--batch", type=argtypes.whole(minimum=1), default=1, metavar="K",
                   help="CALM: pages per optimisation step (default 1)")
    m.add_argument("--points", type=argtypes.whole(minimum=2, maximum=MAX_POINTS), default=400, metavar="N",
                   help="bandwidths on the fixed-cost curve (default 400)")
    add_output_options(m, default=DEFAULT_OUTPUT, output_help=f"output directory (default {DEFAULT_OUTPUT}/)",
                       earlier="run", json_help="print model.json's content on stdout")


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

    from calm.core import units
    from calm.replay import model
    from calm.replay.charge import Charge
    from calm.replay.cost import in_pages, parse_cost
    from calm.replay.outputs import write_csv, write_json
    from calm.replay.scenario import rate_to_pages

    p = args.p
    bandwidth = rate_to_pages(args.bandwidth, page_size, unit) if args.bandwidth else (args.bandwidth_pages or 100.0)
    cost_fn = parse_cost(args.cost)
    charge = Charge(args.charge, args.price_per_second)  # a rate, like F: the same per second or per unit
    # the plans see the charge's normalised rate G and their costs are scaled back by d (replay/charge.py)
    F, d = charge.apply(in_pages(cost_fn, page_size, unit), bandwidth)
    fixed = model.optimal_fixed(n_pages, p, bandwidth, F)
    calm = model.calm_plan(n_pages, p, bandwidth, F, batch=args.batch)
    fixed.cost, calm.cost, calm.step_cost = fixed.cost * d, calm.cost * d, calm.step_cost * d
    bs = np.linspace(bandwidth / args.points, bandwidth, args.points)
    costs = model.fixed_cost_curve(bs, n_pages, p, bandwidth, F) * d
    stops = model.best_stop(bs, n_pages, p, bandwidth, F)
    params = {"n_pages": n_pages, "p": p, "bandwidth_pages": bandwidth, "time_unit_s": unit,
              "page_size": page_size, "cost": cost_fn.describe(), "batch": args.batch,
              "charge": args.charge, "price_per_s": args.price_per_second}
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
    rate = lambda b: units.mbit_s(b * page_size * 8 / unit)  # noqa: E731 pages per unit -> text
    described = (f"M={n_pages} pages ({units.mib(n_pages * page_size)}), p={p:g} and "
                 f"B={bandwidth:.6g} pages per {unit:g} s ({rate(bandwidth)}), F={cost_fn.spec}")
    if not args.no_plots:
        from calm.replay.plots import plot_model

        files += plot_model(bs, costs, fixed, calm, out, "Uniform model: " + described,
                            page_size=page_size, unit_s=unit)
    if args.json:
        print((out / "model.json").read_text(), end="")
    elif not args.quiet:
        print(described)
        print(f"{'':14}{'bandwidth':>30}{'clean N':>10}{'cost (s)':>12}{'pre-copy (s)':>14}{'downtime (s)':>14}")
        print(f"{'optimal fixed':14}{rate(fixed.bandwidth):>30}{fixed.n_clean:>10.0f}{fixed.cost * unit:>12.5g}"
              f"{fixed.precopy_time * unit:>14.2f}{fixed.downtime * unit:>14.3f}")
        b_range = (f"{rate(calm.bandwidth[0])} -> {rate(calm.bandwidth[-1])}" if len(calm.bandwidth) else "-")
        print(f"{'CALM':14}{b_range:>30}{calm.n_clean:>10d}{calm.cost * unit:>12.5g}"
              f"{calm.precopy_time * unit:>14.2f}{calm.downtime * unit:>14.3f}")
        print(f"(model.json and the CSV files count in time units of {unit:g} s and pages per time unit)")
    if not args.quiet:
        print(f"wrote {len(files)} files to {out}/", file=sys.stderr)
    return 0
