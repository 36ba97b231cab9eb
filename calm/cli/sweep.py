"""`calm sweep TRACE... -s SCENARIO...`: the cross product of traces, scenarios, cost functions,
policies and policy options, replayed on Dask (a local cluster or an existing one), into one tidy
table and summary plots.

Everything that can be checked is checked before the cluster starts or anything is written: the
command line (exit 2), Dask being installed, the traces, cost functions and output directory
(exit 1). A cell that fails while the sweep runs is a row with an `error`; the others finish, and
the command exits 1 after writing the table when any cell failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from calm.cli.output_options import add_output_options
from calm.cli.replay import scenario_type
from calm.core import argtypes
from calm.core.errors import CalmError, UsageError
from calm.replay.defaults import ALGORITHMS, DEFAULT_COST_SPEC, EXTEND_MODES, SLIDE_SCENARIOS
from calm.replay.sweep_options import SWEEP_OPTIONS

HELP = "replay many traces x scenarios x policies on Dask into one table (needs calm[sweep])"
DESCRIPTION = (
    "Replay every combination of the given traces, scenarios, cost functions, policies and policy "
    "options (one simulated migration per combination) on a Dask cluster: a local one of --workers "
    "processes by default, or the running cluster at --scheduler. Writes sweep.csv (and "
    "sweep.parquet when pyarrow is installed), sweep.json and plots of cost by policy and scenario "
    "and of who wins where."
)
EPILOG = f"""\
options that take comma-separated lists (each value is run; several lists: every combination,
per policy, so other policies are not repeated):
  {", ".join(o.flag for o in SWEEP_OPTIONS)}
-s and --cost are repeatable; the other replay options take one value.

examples:
  calm sweep fleet/*.h5 -s 16GiB@10Gbit -s 64GiB@10Gbit --workers 2
  calm sweep a.h5 b.h5 -a calm,qemu --qemu-max-bandwidth 1Gbit,2Gbit,4Gbit
  dask scheduler --scheduler-file s.json & dask worker --scheduler-file s.json &
  calm sweep fleet/*.h5 --scheduler-file s.json   (or --scheduler tcp://HOST:8786)
install Dask with: pip install 'calm[sweep]'"""

DEFAULT_OUTPUT = "calm-sweep"
OUTPUT_FILES = ("sweep.csv", "sweep.parquet", "sweep.json", "sweep-cost.png", "sweep-cost.svg",
                "sweep-winners.png", "sweep-winners.svg")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("traces", nargs="+", metavar="TRACE", help="traces written by `calm record`")
    p.add_argument("-s", "--scenario", type=argtypes.typed("scenario", scenario_type), action="append",
                   metavar="RAM@BANDWIDTH",
                   help=f"e.g. 16GiB@10Gbit; repeatable (default: the slides' {', '.join(SLIDE_SCENARIOS)})")
    p.add_argument("-a", "--algorithm", action="append", metavar="LIST",
                   help="comma-separated: calm,clark,xen,qemu,fixed (the default), clark-adaptive (Clark as Xen's "
                        "ADAPTIVE_SAVE implemented it: 100-500 Mbit/s, terminates) and calm-pages (a page-aware "
                        "CALM: per-page rates learnt from the dirty log, cold pages first, optimal stopping)")
    p.add_argument("--cost", action="append", metavar="SPEC",
                   help=f"cost function F, repeatable: mm1:rate=REQ_PER_S,size=SIZE,sla=DURATION or "
                        f"csv:PATH (default {DEFAULT_COST_SPEC})")
    p.add_argument("--extend", choices=EXTEND_MODES, help="past a trace's end: loop it (default) or resample")
    p.add_argument("--skip", type=argtypes.duration(allow_zero=True), metavar="DURATION",
                   help="leave out each trace's first DURATION (its start-up fill)")
    p.add_argument("--seed", type=argtypes.whole(), metavar="N", help="random seed for --extend resample")
    p.add_argument("--max-time", type=argtypes.duration(), metavar="DURATION",
                   help="cut any pre-copy longer than this (default: as calm replay)")
    for option in SWEEP_OPTIONS:
        p.add_argument(option.flag, type=argtypes.values(option.argtype), action="append", metavar=option.metavar,
                       help=f"{option.help}; comma-separated values, each run")
    where = p.add_argument_group("where the cells run (Dask)")
    where.add_argument("--workers", type=argtypes.whole(minimum=1), metavar="N",
                       help="worker processes of the local cluster (default: the number of cores)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT) instead")
    where.add_argument("--scheduler-file", metavar="PATH",
                       help="run on the Dask cluster whose scheduler wrote PATH (dask scheduler --scheduler-file)")
    add_output_options(p, output_help=f"output directory (default ./{DEFAULT_OUTPUT})", earlier="sweep",
                       json_help="print the table as JSON rows on stdout")


def _check_modes(args: argparse.Namespace) -> None:
    if args.scheduler and args.scheduler_file:
        raise UsageError("give --scheduler or --scheduler-file, not both")
    if args.workers and (args.scheduler or args.scheduler_file):
        raise UsageError("--workers sizes the local cluster; an existing cluster has the workers it has")
    if args.seed is not None and args.extend != "resample":
        raise UsageError("--seed only matters with --extend resample")


def _grid(args: argparse.Namespace, algorithms: list[str]) -> dict[str, list]:
    """PolicyOptions field -> the values to run (repeated options add up; repeats dropped)."""
    grid = {}
    for option in SWEEP_OPTIONS:
        given = getattr(args, option.flag.lstrip("-").replace("-", "_"))
        if not given:
            continue
        if option.algorithm not in algorithms:
            raise UsageError(f"{option.flag} needs the {option.algorithm} algorithm")
        grid[option.field] = list(dict.fromkeys(v for values in given for v in values))
    return grid


def _check_traces(paths: list[str], skip: float) -> list[str]:
    """Existing, readable traces (a bad one is refused before the cluster starts), without repeats."""
    from calm.core.paths import check_input_trace
    from calm.replay.trace_map import first_sample_after
    from calm.trace.reader import Trace

    traces = list(dict.fromkeys(paths))
    for trace in traces:
        with Trace(check_input_trace(trace)) as t:
            if t.n_samples:
                first_sample_after(t, skip)
    return traces


def run(args: argparse.Namespace) -> int:
    _check_modes(args)
    from calm.replay.sweep_cluster import require_dask

    require_dask()
    from calm.core.paths import check_output_dir, prepare_output_dir
    from calm.core.progress import Progress
    from calm.replay.cost import parse_cost
    from calm.replay.runner import parse_algorithms
    from calm.replay.scenario import parse_scenario
    from calm.replay.sweep import ReplaySettings, SweepPlan, variants

    algorithms = parse_algorithms(args.algorithm or [",".join(ALGORITHMS)])
    grid = _grid(args, algorithms)
    costs = list({c.spec: c for c in map(parse_cost, args.cost or [DEFAULT_COST_SPEC])}.values())
    scenarios = list(dict.fromkeys(args.scenario or [parse_scenario(s) for s in SLIDE_SCENARIOS]))
    settings = ReplaySettings(extend=args.extend or "loop", seed=args.seed or 0, max_time_s=args.max_time,
                              skip_seconds=args.skip or 0.0)
    plan = SweepPlan(_check_traces(args.traces, settings.skip_seconds), scenarios, costs,
                     variants(algorithms, grid), settings)
    out = Path(args.output or DEFAULT_OUTPUT)
    check_output_dir(out, force=args.force)

    from calm.replay.sweep_cluster import SweepInterrupted, cluster_summary, open_client, run_cells

    # A Ctrl-C can cut a Dask coroutine of the in-process scheduler (a scatter under way); asyncio
    # then logs "Task exception was never retrieved" when the task is collected, at exit.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    cells = plan.cells()
    described: dict[str, dict] = {}
    started = time.time()
    with Progress(quiet=args.quiet) as progress:
        try:
            with open_client(workers=args.workers, scheduler=args.scheduler, scheduler_file=args.scheduler_file,
                             note=progress.note) as client:
                where = cluster_summary(client)
                progress.note(f"calm sweep: {len(cells)} cells ({len(plan.traces)} traces x {len(scenarios)} "
                              f"scenarios x {len(costs)} costs x {len(plan.variants)} policies) on {where}")
                results = run_cells(client, plan, progress.update, traces=described)
        except SweepInterrupted as stop:
            done = sum(r is not None for r in stop.results)
            _write(prepare_output_dir(out, force=True), plan, cells, stop.results, where, started,
                   plots=False, quiet=True, traces=described)
            print(f"calm sweep: interrupted after {done} of {len(cells)} cells; their rows are in "
                  f"{out / 'sweep.csv'}", file=sys.stderr)
            return 130
    rows, files = _write(prepare_output_dir(out, force=True), plan, cells, results, where, started,
                         plots=not args.no_plots, quiet=args.quiet, traces=described)
    if args.json:
        import json

        from calm.replay.outputs import json_ready

        print(json.dumps(json_ready(rows), indent=1))
    elif not args.quiet:
        from calm.replay.sweep_table import format_summary

        print(format_summary(rows))
    if not args.quiet:
        print(f"wrote {len(files)} files to {out}/", file=sys.stderr)
    failed = sum(bool(r["error"]) for r in rows)
    if failed:
        raise CalmError(f"{failed} of {len(rows)} cells failed; the error column of {out / 'sweep.csv'} "
                        f"says why")
    return 0


def _write(out: Path, plan, cells, results, where: str, started: float, *, plots: bool, quiet: bool,
           traces: dict[str, dict]):
    from calm.core.version import __version__
    from calm.replay.sweep import cell_row, error_result
    from calm.replay.sweep_table import write_csv, write_json, write_parquet

    not_run = error_result("not run: the sweep was interrupted")
    rows = [cell_row(cell, result or not_run) for cell, result in zip(cells, results)]
    files = [write_csv(rows, out / "sweep.csv")]
    parquet = write_parquet(rows, out / "sweep.parquet")
    if parquet is None and not quiet:
        print("calm sweep: pyarrow is not installed, so no sweep.parquet (pip install pyarrow)", file=sys.stderr)
    elif parquet is not None:
        files.append(parquet)
    files.append(write_json({"tool": "calm sweep", "version": __version__, "sweep": plan.describe(),
                             "traces": traces, "cluster": where, "cells": len(rows),
                             "failed": sum(bool(r["error"]) for r in rows),
                             "wall_seconds": time.time() - started}, out / "sweep.json"))
    if plots:
        from calm.replay.sweep_plots import write_sweep_plots

        files += write_sweep_plots(rows, out)
    for stale in set(OUTPUT_FILES) - {f.name for f in files}:  # an earlier sweep's, now misleading
        (out / stale).unlink(missing_ok=True)
    return rows, files
