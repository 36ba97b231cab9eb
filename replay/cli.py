"""`calm replay` and `calm model`: trace-driven migration and the uniform analytic model.

Options are parsed as strings and validated here, so that every bad value (zero bandwidth,
ambiguous unit, unknown algorithm...) is one `calm: error:` line, and options that would have no
effect in the given mode are refused instead of silently ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from calm.errors import CalmError
from replay.cost import DEFAULT_COST_SPEC
from replay.dirty import EXTEND_MODES
from replay.scenario import SLIDE_SCENARIOS, parse_scenario
from replay.units import parse_duration, parse_rate, parse_size

MODEL_DEFAULT_COST = "mm1:rate=15,size=16KiB,sla=1s"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay", help="replay a trace into live-migration policies (CALM, Clark, Xen, QEMU, Fixed)",
        description="Simulate pre-copy live migration of a recorded (or synthetic uniform) dirtying "
                    "workload with CALM and its baselines; print the slides' table and write "
                    "results.csv, results.json and plots. One step = one trace sample.")
    p.add_argument("trace", nargs="?", metavar="TRACE.h5", help="trace written by `calm record`")
    p.add_argument("--uniform", metavar="P", help="replay a synthetic uniform workload: each page written "
                   "with probability P per step, instead of a trace")
    p.add_argument("--interval", metavar="DURATION", help="step length of the --uniform workload (default 0.1s)")
    p.add_argument("-s", "--scenario", action="append", metavar="RAM@BANDWIDTH",
                   help=f"e.g. 1GiB@1Gbit; repeatable (default: the slides' {', '.join(SLIDE_SCENARIOS)})")
    p.add_argument("-a", "--algorithm", action="append", metavar="LIST",
                   help="comma-separated: calm,clark,xen,qemu,fixed (default: all)")
    p.add_argument("--cost", metavar="SPEC", default=DEFAULT_COST_SPEC,
                   help=f"cost function F: mm1:rate=REQ_PER_S,size=SIZE,sla=DURATION or csv:PATH "
                        f"(rows 'bandwidth,probability'; default {DEFAULT_COST_SPEC})")
    p.add_argument("--extend", choices=EXTEND_MODES, help="past the trace's end: loop it (default) or "
                   "resample each page from its observed per-step probability")
    p.add_argument("--skip", metavar="DURATION", help="leave out the trace's first DURATION (e.g. 10s): a "
                   "service's start-up fill would otherwise be replayed again on every loop")
    p.add_argument("--seed", metavar="N", help="random seed for --uniform and --extend resample (default 0)")
    p.add_argument("--sweep", metavar="POINTS", default="0", help="also simulate fixed-bandwidth migrations "
                   "at POINTS bandwidths and plot cost against bandwidth beside the uniform model (default 0: off)")
    p.add_argument("--max-time", metavar="DURATION", help="cut any pre-copy longer than this (marked forced; "
                   "default: the time to send the RAM 100 times at full bandwidth)")
    p.add_argument("--clark-min", metavar="RATE", help="Clark: first round's (minimum) rate (default 100Mbit, at most half the bandwidth)")
    p.add_argument("--clark-max", metavar="RATE", help="Clark: maximum rate (default: the scenario's bandwidth)")
    p.add_argument("--clark-increment", metavar="RATE", help="Clark: rate increment per round (default 50Mbit, at most a quarter of the bandwidth)")
    p.add_argument("--clark-max-rounds", metavar="N", help="Clark: also stop after N rounds (default: no cap, "
                   "as in Clark et al.; Xen's implementation used 29)")
    p.add_argument("--qemu-max-bandwidth", metavar="RATE", help="QEMU: max-bandwidth (default 128MiB/s, QEMU's "
                   "MAX_THROTTLE; a slower link caps it)")
    p.add_argument("--qemu-downtime-limit", metavar="DURATION", help="QEMU: downtime-limit (default 300ms)")
    p.add_argument("--qemu-switchover-bandwidth", metavar="RATE", help="QEMU: avail-switchover-bandwidth, used "
                   "instead of the measured bandwidth for the switch-over threshold (default: unset)")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (default TRACE-replay/ or replay-uniform/)")
    p.add_argument("--no-plots", action="store_true", help="write only the data files")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run_replay_command)

    m = subparsers.add_parser(
        "model", help="the uniform analytic model: optimal fixed bandwidth and CALM's schedule",
        description="Evaluate the CALM cost model for a uniform dirtying probability: cost against "
                    "fixed bandwidth, the optimal fixed bandwidth and stop point, and CALM's per-step "
                    "bandwidths. Defaults reproduce the slides' example (M=10,000, p=0.001, B=100).")
    m.add_argument("--pages", metavar="M", help="pages to migrate (default 10000)")
    m.add_argument("--ram", metavar="SIZE", help="RAM to migrate instead of --pages, e.g. 1GiB")
    m.add_argument("--p", metavar="P", default="0.001", help="probability a page is written per time unit (default 0.001)")
    m.add_argument("--bandwidth-pages", metavar="B", help="total bandwidth in pages per time unit (default 100)")
    m.add_argument("--bandwidth", metavar="RATE", help="total bandwidth as a rate instead, e.g. 1Gbit")
    m.add_argument("--time-unit", metavar="DURATION", default="1s", help="length of the time unit (default 1s)")
    m.add_argument("--page-size", metavar="SIZE", default="4KiB", help="page size (default 4KiB)")
    m.add_argument("--cost", metavar="SPEC", default=MODEL_DEFAULT_COST,
                   help=f"cost function F, as for calm replay (default {MODEL_DEFAULT_COST})")
    m.add_argument("--batch", metavar="K", default="1", help="CALM: pages per optimisation step (default 1)")
    m.add_argument("--points", metavar="N", default="400", help="bandwidths on the fixed-cost curve (default 400)")
    m.add_argument("-o", "--output", metavar="DIR", default="calm-model", help="output directory (default calm-model/)")
    m.add_argument("--no-plots", action="store_true", help="write only the data files")
    m.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    m.set_defaults(func=run_model_command)


def _int(text: str, name: str, minimum: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise CalmError(f"{name} '{text}' is not a whole number") from None
    if value < minimum:
        raise CalmError(f"{name} must be at least {minimum} (got {value})")
    return value


def _probability(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CalmError(f"{name} '{text}' is not a number") from None
    if not 0.0 <= value < 1.0:
        raise CalmError(f"{name} must be in [0, 1) (got {text})")
    return value


def run_replay_command(args: argparse.Namespace) -> int:
    from replay.runner import ALGORITHMS, PolicyOptions, parse_algorithms, run_replay
    from replay.cost import parse_cost

    if (args.trace is None) == (args.uniform is None):
        raise CalmError("give a trace file or --uniform P (one of them)")
    uniform = args.uniform is not None
    if not uniform and args.interval is not None:
        raise CalmError("--interval applies to --uniform only; a trace's step is its sampling interval")
    if uniform and args.skip is not None:
        raise CalmError("--skip applies to traces only")
    if uniform and args.extend is not None:
        raise CalmError("--extend applies to traces only; a --uniform workload never ends")
    if args.seed is not None and not (uniform or args.extend == "resample"):
        raise CalmError("--seed only matters with --uniform or --extend resample")
    scenarios = [parse_scenario(s) for s in (args.scenario or SLIDE_SCENARIOS)]
    algorithms = parse_algorithms(args.algorithm or [",".join(ALGORITHMS)])
    clark_opts = (args.clark_min, args.clark_max, args.clark_increment, args.clark_max_rounds)
    if any(o is not None for o in clark_opts) and "clark" not in algorithms:
        raise CalmError("--clark-* options need the clark algorithm")
    if (args.qemu_max_bandwidth or args.qemu_downtime_limit or args.qemu_switchover_bandwidth) \
            and "qemu" not in algorithms:
        raise CalmError("--qemu-* options need the qemu algorithm")
    options = PolicyOptions(
        clark_min_bps=parse_rate(args.clark_min, "--clark-min") if args.clark_min else None,
        clark_max_bps=parse_rate(args.clark_max, "--clark-max") if args.clark_max else None,
        clark_increment_bps=(parse_rate(args.clark_increment, "--clark-increment", allow_zero=True)
                             if args.clark_increment else None),
        clark_max_rounds=_int(args.clark_max_rounds, "--clark-max-rounds", 1) if args.clark_max_rounds else None,
        qemu_max_bandwidth_bps=parse_rate(args.qemu_max_bandwidth, "--qemu-max-bandwidth") if args.qemu_max_bandwidth else None,
        qemu_downtime_limit_s=(parse_duration(args.qemu_downtime_limit, "--qemu-downtime-limit")
                               if args.qemu_downtime_limit else 0.3),
        qemu_switchover_bandwidth_bps=(parse_rate(args.qemu_switchover_bandwidth, "--qemu-switchover-bandwidth")
                                       if args.qemu_switchover_bandwidth else None),
    )
    cost = parse_cost(args.cost)
    sweep = _int(args.sweep, "--sweep", 0)
    if sweep == 1:
        raise CalmError("--sweep needs at least 2 points (or 0 for none)")
    max_time = parse_duration(args.max_time, "--max-time") if args.max_time else None
    skip = parse_duration(args.skip, "--skip", allow_zero=True) if args.skip is not None else 0.0
    p = _probability(args.uniform, "--uniform") if uniform else None
    step = parse_duration(args.interval, "--interval") if args.interval else 0.1
    seed = _int(args.seed, "--seed", 0) if args.seed is not None else 0
    if args.output:
        out_path = Path(args.output)
    elif uniform:
        out_path = Path(f"replay-uniform-{args.uniform}")
    else:
        trace = Path(args.trace)
        out_path = trace.with_name(trace.stem + "-replay")
    from calm.outputs import prepare_output_dir
    if not uniform:
        from collector.trace_reader import Trace
        from replay.trace_map import first_sample_after
        with Trace(args.trace) as trace_file:  # a bad trace or --skip fails before we create anything
            if trace_file.n_samples:
                first_sample_after(trace_file, skip)
    out = prepare_output_dir(out_path)

    from collector.progress import Progress  # live on a terminal, a line every 5 s otherwise
    with Progress(quiet=args.quiet) as progress:
        report = run_replay(args.trace, scenarios, algorithms, cost, uniform_p=p, uniform_step_seconds=step,
                            extend=args.extend or "loop", seed=seed, options=options, sweep_points=sweep,
                            max_time_s=max_time, skip_seconds=skip, progress=lambda msg: progress.update(f"replaying {msg}"))
    from replay.outputs import TABLE_COLUMNS, format_table, write_csv, write_json
    rows = report.table()
    files = [write_csv(rows, TABLE_COLUMNS, out / "results.csv"), write_json(report.to_dict(), out / "results.json")]
    if not args.no_plots:
        from replay.plots import plot_bandwidth, plot_sweep
        files += plot_bandwidth(report, out) + plot_sweep(report, out)
    if not args.quiet:
        step_info = f"step {report.step_seconds:.4g} s, page {report.page_size} B, cost {report.cost['spec']}"
        print(f"{'uniform p=' + str(p) if uniform else args.trace}: {step_info}")
        print(format_table(rows))
        print(f"wrote {len(files)} files to {out}/")
    return 0


def run_model_command(args: argparse.Namespace) -> int:
    import numpy as np

    from replay import model
    from replay.cost import in_pages, parse_cost
    from calm.outputs import prepare_output_dir
    from replay.outputs import write_csv, write_json
    from replay.scenario import rate_to_pages

    if args.pages and args.ram:
        raise CalmError("give --pages or --ram, not both")
    if args.bandwidth_pages and args.bandwidth:
        raise CalmError("give --bandwidth-pages or --bandwidth, not both")
    page_size = parse_size(args.page_size, "page size")
    unit = parse_duration(args.time_unit, "time unit")
    if args.ram:
        ram = parse_size(args.ram, "RAM size")
        if ram % page_size:
            raise CalmError(f"RAM {args.ram} is not a whole number of {page_size}-byte pages")
        n_pages = ram // page_size
    else:
        n_pages = _int(args.pages or "10000", "--pages", 1)
    p = _probability(args.p, "--p")
    if args.bandwidth:
        bandwidth = rate_to_pages(parse_rate(args.bandwidth, "--bandwidth"), page_size, unit)
    else:
        try:
            bandwidth = float(args.bandwidth_pages or "100")
        except ValueError:
            raise CalmError(f"--bandwidth-pages '{args.bandwidth_pages}' is not a number") from None
        if not bandwidth > 0:
            raise CalmError(f"--bandwidth-pages must be positive (got {args.bandwidth_pages})")
    batch = _int(args.batch, "--batch", 1)
    points = _int(args.points, "--points", 2)
    cost_fn = parse_cost(args.cost)
    out = prepare_output_dir(Path(args.output))
    F = in_pages(cost_fn, page_size, unit)

    fixed = model.optimal_fixed(n_pages, p, bandwidth, F)
    calm = model.calm_plan(n_pages, p, bandwidth, F, batch=batch)
    bs = np.linspace(bandwidth / points, bandwidth, points)
    costs = model.fixed_cost_curve(bs, n_pages, p, bandwidth, F)
    stops = model.best_stop(bs, n_pages, p, bandwidth, F)
    params = {"n_pages": n_pages, "p": p, "bandwidth_pages": bandwidth, "time_unit_s": unit,
              "page_size": page_size, "cost": cost_fn.describe(), "batch": batch}
    files = [
        write_json({"tool": "calm model", "parameters": params, "fixed": fixed.to_dict(),
                    "calm": calm.to_dict()}, out / "model.json"),
        write_csv([{"bandwidth": b, "stop_clean": n, "cost": c} for b, n, c in zip(bs, stops, costs)],
                  ("bandwidth", "stop_clean", "cost"), out / "fixed-cost.csv"),
        write_csv([{"clean": int(i), "pages": int(k), "bandwidth": b, "step_cost": c, "step_time": t}
                   for i, k, b, c, t in zip(calm.start, calm.size, calm.bandwidth, calm.step_cost, calm.step_time)],
                  ("clean", "pages", "bandwidth", "step_cost", "step_time"), out / "calm-schedule.csv"),
    ]
    if not args.no_plots:
        from replay.plots import plot_model
        files += plot_model(bs, costs, fixed, calm, out,
                            f"Uniform model: M={n_pages}, p={p:g}, B={bandwidth:.4g} pages/unit, F={cost_fn.spec}")
    if not args.quiet:
        print(f"M={n_pages} pages, p={p:g}, B={bandwidth:.6g} pages per {unit:g} s, F={cost_fn.spec}")
        print(f"{'':14}{'bandwidth':>22}{'clean N':>10}{'cost':>12}{'pre-copy':>12}{'downtime':>10}")
        print(f"{'optimal fixed':14}{fixed.bandwidth:>22.4f}{fixed.n_clean:>10.0f}{fixed.cost:>12.5g}"
              f"{fixed.precopy_time:>12.2f}{fixed.downtime:>10.3f}")
        b_range = f"{calm.bandwidth[0]:.3f} -> {calm.bandwidth[-1]:.3f}" if len(calm.bandwidth) else "-"
        print(f"{'CALM':14}{b_range:>22}{calm.n_clean:>10d}{calm.cost:>12.5g}"
              f"{calm.precopy_time:>12.2f}{calm.downtime:>10.3f}")
        print(f"(costs and times in time units of {unit:g} s; bandwidths in pages per time unit)")
        print(f"wrote {len(files)} files to {out}/")
    return 0
