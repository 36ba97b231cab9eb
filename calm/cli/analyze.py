"""`calm analyze [TRACE]`: dirtying probabilities, plots and data files of a trace.

In the style of `perf report` / `damo report`: read a recorded trace (`calm.h5` by default), print
a short summary, and leave the figures (PNG and SVG) and tables (summary.json, CSV) in one
directory next to the trace.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calm.cli.output_options import add_output_options
from calm.core import argtypes
from calm.core.paths import DEFAULT_TRACE

HELP = "per-page dirtying probabilities, plots and tables of a trace"
DESCRIPTION = (
    "Analyse a calm trace: per-page dirtying probability (over the samples in which the page was "
    "mapped), top-100/top-500 rankings, distribution, dirtying over time, address x time heatmap, "
    "working sets, and where memory is dirtied (regions, ELF sections and symbols)."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", nargs="?", default=DEFAULT_TRACE, metavar="TRACE",
                        help=f"trace written by `calm record` (default {DEFAULT_TRACE})")
    add_output_options(parser, output_help="directory for plots and data files (default: TRACE-analysis next "
                                           "to the trace)",
                       earlier="analysis", json_help="print the summary as JSON on stdout")
    parser.add_argument("--pid", type=argtypes.whole(minimum=1), action="append", metavar="PID",
                        help="analyse only this process of the trace (repeatable; default: all)")
    parser.add_argument("--region-names", metavar="FILE",
                        help="name address ranges the maps show as anonymous: lines 'PID START-END NAME' in "
                             "/proc/PID/maps notation, e.g. a JVM's heap from `jcmd PID GC.heap_info`")


def _progress(quiet: bool):
    """Progress on a terminal (rich); nothing when piped or quiet, so CI logs stay clean."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.progress import Progress

    bar = Progress(transient=True)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)

    return bar, update


def run(args: argparse.Namespace) -> int:
    from calm.core.paths import check_input_trace, check_output_dir, default_output, prepare_output_dir

    trace = check_input_trace(args.trace)
    out = Path(args.output) if args.output else default_output(trace, "-analysis")
    check_output_dir(out, force=args.force)
    from calm.analyzer import analyze, outputs
    from calm.trace.reader import Trace

    Trace(trace).close()  # a foreign or broken file is one error line before any output exists
    names = []
    if args.region_names:
        from calm.analyzer.names import load_region_names

        names = load_region_names(args.region_names)
    bar, update = _progress(args.quiet)
    if bar:
        with bar:
            analysis = analyze(trace, pids=args.pid, progress=update, region_names=names)
    else:
        analysis = analyze(trace, pids=args.pid, region_names=names)
    out = prepare_output_dir(out, force=args.force)
    files = outputs.write_data(analysis, out)
    if not args.no_plots:
        from calm.analyzer.plots import write_plots

        files += write_plots(analysis, out)
    if args.json:
        print(json.dumps(outputs.summary_dict(analysis), indent=2))
    elif not args.quiet:
        print(outputs.summary_text(analysis))
    if not args.quiet:
        print(f"wrote {len(files)} files to {out}/ (summary.json, pages.csv"
              + (", plots as PNG and SVG)" if not args.no_plots else ")"), file=sys.stderr)
    return 0
