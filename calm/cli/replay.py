"""`calm replay [TRACE]`: trace-driven pre-copy migration through CALM and its baselines.

Options are checked by argparse `type=` callables (calm.core.argtypes) and by `run` before any file
is created, so a bad value is one usage line (exit 2) and a bad input one error line (exit 1);
options that would have no effect in the given mode are refused instead of silently ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calm.cli.output_options import add_output_options
from calm.core import argtypes
from calm.core.errors import UsageError
from calm.core.paths import DEFAULT_TRACE
from calm.replay.defaults import ALGORITHMS, DEFAULT_COST_SPEC, EXTEND_MODES, SLIDE_SCENARIOS

# A step shorter than a millisecond is shorter than any recording interval; each sweep point is a
# whole simulation, so more than a thousand of them is a typo (and memory the machine lacks).
MIN_STEP_SECONDS = 1e-3
MAX_SWEEP_POINTS = 1000

HELP = "replay a trace into live-migration policies (CALM, Clark, Xen, QEMU, Fixed)"
DESCRIPTION = (
    "Simulate pre-copy live migration of a recorded (or synthetic uniform) dirtying workload with "
    "CALM and its baselines; print the slides' table and write results.csv, results.json and plots "
    "next to the trace. One step = one trace sample."
)


def scenario_type(text: str):
    from calm.replay.scenario import parse_scenario

    return parse_scenario(text)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("trace", nargs="?", metavar="TRACE",
                   help=f"trace written by `calm record` (default {DEFAULT_TRACE}, unless --uniform)")
    p.add_argument("--uniform", type=argtypes.probability(), metavar="P",
                   help="replay a synthetic uniform workload instead of a trace: each page written with "
                        "probability P per step")
    p.add_argument("--interval", type=argtypes.duration(minimum=MIN_STEP_SECONDS), metavar="DURATION",
                   help="step length of the --uniform workload (default 100ms)")
    p.add_argument("-s", "--scenario", type=argtypes.typed("scenario", scenario_type), action="append",
                   metavar="RAM@BANDWIDTH",
                   help=f"e.g. 1GiB@1Gbit, or trace@10Gbit to migrate the trace's own recorded memory; "
                        f"repeatable (default: the recorded service's RAM, its resident memory rounded up, "
                        f"@1Gbit, and the slides' {', '.join(SLIDE_SCENARIOS)}; a scenario smaller than the "
                        f"trace's footprint is reported, not run)")
    p.add_argument("-a", "--algorithm", action="append", metavar="LIST",
                   help="comma-separated: calm,clark,xen,qemu,fixed (the default), clark-adaptive (Clark as Xen's "
                        "ADAPTIVE_SAVE implemented it: 100-500 Mbit/s, terminates) and calm-pages (a page-aware "
                        "CALM: per-page rates learnt from the dirty log, cold pages first, optimal stopping)")
    p.add_argument("--cost", metavar="SPEC", default=DEFAULT_COST_SPEC,
                   help=f"cost function F: mm1:rate=REQ_PER_S,size=SIZE,sla=DURATION or csv:PATH "
                        f"(rows 'bandwidth,probability'; default {DEFAULT_COST_SPEC})")
    p.add_argument("--charge", choices=("absolute", "extra"),
                   help="what the cost charges: every SLA violation during the migration (absolute, the "
                        "slides' default) or only those it adds to what the service violates at the full "
                        "bandwidth (extra)")
    p.add_argument("--price-per-second", type=argtypes.number(minimum=0.0, maximum=1e6), metavar="X",
                   help="also charge X seconds of violated SLA per second of migration, downtime included "
                        "(a reserved destination, dirty logging; default 0: time is free where F is ~0)")
    p.add_argument("--extend", choices=EXTEND_MODES, help="past the trace's end: loop it (default) or "
                   "resample each page from its observed per-step probability")
    p.add_argument("--skip", type=argtypes.duration(allow_zero=True), metavar="DURATION",
                   help="leave out the trace's first DURATION (e.g. 10s): a service's start-up fill "
                        "would otherwise be replayed again on every loop")
    p.add_argument("--seed", type=argtypes.whole(), metavar="N",
                   help="random seed for --uniform and --extend resample (default 0)")
    p.add_argument("--sweep", type=argtypes.whole(maximum=MAX_SWEEP_POINTS), default=0, metavar="POINTS",
                   help="also simulate fixed-bandwidth migrations at POINTS (>= 2) bandwidths and plot cost "
                        "against bandwidth beside the uniform model (default 0: off)")
    p.add_argument("--max-time", type=argtypes.duration(), metavar="DURATION",
                   help="cut any pre-copy longer than this (marked forced; default: 100 RAM send times at "
                        "full bandwidth, and after the first pass at most 1000 footprint send times or 10 loops "
                        "of the trace more, whichever is longer)")
    p.add_argument("--clark-min", type=argtypes.rate(), metavar="RATE",
                   help="Clark: first round's (minimum) rate (default 100Mbit, at most half the bandwidth)")
    p.add_argument("--clark-max", type=argtypes.rate(), metavar="RATE",
                   help="Clark: maximum rate (default: the scenario's bandwidth)")
    p.add_argument("--clark-increment", type=argtypes.rate(allow_zero=True), metavar="RATE",
                   help="Clark: rate increment per round (default 50Mbit, at most a quarter of the bandwidth)")
    p.add_argument("--clark-max-rounds", type=argtypes.whole(minimum=1), metavar="N",
                   help="Clark: also stop after N rounds (default: no cap, as in Clark et al.; Xen's "
                        "implementation used 29)")
    p.add_argument("--qemu-max-bandwidth", type=argtypes.rate(), metavar="RATE",
                   help="QEMU: max-bandwidth (default 128MiB/s, QEMU's MAX_THROTTLE; a slower link caps it)")
    p.add_argument("--qemu-downtime-limit", type=argtypes.duration(), metavar="DURATION",
                   help="QEMU: downtime-limit (default 300ms)")
    p.add_argument("--qemu-switchover-bandwidth", type=argtypes.rate(), metavar="RATE",
                   help="QEMU: avail-switchover-bandwidth, used instead of the measured bandwidth for the "
                        "switch-over threshold (QEMU 8.2+; default unset)")
    add_output_options(p, output_help="output directory (default TRACE-replay next to the trace, or "
                                      "replay-uniform-P)",
                       earlier="replay", json_help="print the table as JSON rows on stdout")


def _check_modes(args: argparse.Namespace) -> None:
    uniform = args.uniform is not None
    if uniform and args.trace is not None:
        raise UsageError("give a trace or --uniform P, not both")
    if not uniform and args.interval is not None:
        raise UsageError("--interval applies to --uniform only; a trace's step is its sampling interval")
    if uniform and args.skip is not None:
        raise UsageError("--skip applies to traces only")
    if uniform and args.extend is not None:
        raise UsageError("--extend applies to traces only; a --uniform workload never ends")
    if args.seed is not None and not (uniform or args.extend == "resample"):
        raise UsageError("--seed only matters with --uniform or --extend resample")
    if args.sweep == 1:
        raise UsageError("--sweep needs at least 2 points (or 0 for none)")


def run(args: argparse.Namespace) -> int:
    _check_modes(args)
    from calm.core.paths import check_input_trace, check_output_dir, default_output, prepare_output_dir
    from calm.core.progress import Progress  # live on a terminal, a line every 5 s otherwise
    from calm.replay.charge import Charge
    from calm.replay.cost import parse_cost
    from calm.replay.runner import PolicyOptions, parse_algorithms, run_replay
    from calm.replay.scenario import parse_scenario

    uniform = args.uniform is not None
    trace = None if uniform else check_input_trace(args.trace or DEFAULT_TRACE)
    # without -s: the slides' scenarios, and for a trace a RAM sized from the recorded service
    scenarios = args.scenario or (None if trace is not None else [parse_scenario(s) for s in SLIDE_SCENARIOS])
    algorithms = parse_algorithms(args.algorithm or [",".join(ALGORITHMS)])
    if any(v is not None for v in (args.clark_min, args.clark_max, args.clark_increment,
                                   args.clark_max_rounds)) and "clark" not in algorithms:
        raise UsageError("--clark-* options need the clark algorithm")
    if (args.qemu_max_bandwidth or args.qemu_downtime_limit or args.qemu_switchover_bandwidth) \
            and "qemu" not in algorithms:
        raise UsageError("--qemu-* options need the qemu algorithm")
    options = PolicyOptions(
        clark_min_bps=args.clark_min, clark_max_bps=args.clark_max, clark_increment_bps=args.clark_increment,
        clark_max_rounds=args.clark_max_rounds, qemu_max_bandwidth_bps=args.qemu_max_bandwidth,
        qemu_downtime_limit_s=args.qemu_downtime_limit or 0.3,
        qemu_switchover_bandwidth_bps=args.qemu_switchover_bandwidth)
    cost = parse_cost(args.cost)
    skip = args.skip or 0.0
    if args.output:
        out = Path(args.output)
    else:
        out = Path(f"replay-uniform-{args.uniform:g}") if uniform else default_output(trace, "-replay")
    check_output_dir(out, force=args.force)
    if trace is not None:
        from calm.replay.trace_map import first_sample_after
        from calm.trace.reader import Trace

        with Trace(trace) as trace_file:  # a bad trace or --skip fails before we create anything
            if trace_file.n_samples:
                first_sample_after(trace_file, skip)
    for scenario in scenarios or [parse_scenario(s) for s in SLIDE_SCENARIOS]:
        options.check(scenario, algorithms)

    with Progress(quiet=args.quiet) as progress:
        report = run_replay(str(trace) if trace else None, scenarios, algorithms, cost, uniform_p=args.uniform,
                            uniform_step_seconds=args.interval or 0.1, extend=args.extend or "loop",
                            seed=args.seed or 0, options=options, sweep_points=args.sweep,
                            max_time_s=args.max_time, skip_seconds=skip,
                            progress=lambda msg: progress.update(f"replaying {msg}"),
                            charge=Charge(args.charge or "absolute", args.price_per_second or 0.0))
    from calm.replay.outputs import TABLE_COLUMNS, format_table, with_oracle_rows, write_csv, write_json

    out = prepare_output_dir(out, force=args.force)
    rows = report.table()
    files = [write_csv(rows, TABLE_COLUMNS, out / "results.csv"), write_json(report.to_dict(), out / "results.json")]
    if not args.no_plots:
        from calm.replay.plots import write_replay_plots

        files += write_replay_plots(report.to_dict(), out)
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not args.quiet:
        step_info = f"step {report.step_seconds:.4g} s, page {report.page_size} B, cost {report.cost['spec']}"
        if args.charge or args.price_per_second:
            step_info += f", charge {report.cost['charge']}, {report.cost['price_per_s']:g} s per s of migration"
        print(f"{'uniform p=' + format(args.uniform, 'g') if uniform else trace}: {step_info}")
        print(format_table(with_oracle_rows(rows, report.to_dict()["scenarios"])))
    if not args.quiet:
        for note in report.notes:
            print(f"calm replay: note: {note}", file=sys.stderr)
        print(f"wrote {len(files)} files to {out}/", file=sys.stderr)
    return 0
