"""`calm analyze TRACE.h5 [-o DIR]`: dirtying probabilities, plots and data files of a trace.

In the style of `perf report` / `damo report`: read a recorded trace, print a short summary, and
leave the figures (PNG and SVG) and tables (summary.json, CSV) in one directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analyzer.compute import analyze
from calm.outputs import prepare_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help="per-page dirtying probabilities, plots and tables of a trace",
        description="Analyse a calm trace: per-page dirtying probability (over the samples in "
                    "which the page was mapped), top-100/top-500 rankings, distribution, "
                    "dirtying over time, address x time heatmap, working sets, and where memory "
                    "is dirtied (regions, ELF sections and symbols).")
    parser.add_argument("trace", metavar="TRACE.h5", help="trace written by `calm record`")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="directory for plots and data files (default: TRACE-analysis next to "
                             "the trace); created if missing")
    parser.add_argument("--pid", type=int, action="append", metavar="PID",
                        help="analyse only this process of the trace (repeatable; default: all)")
    parser.add_argument("--no-plots", action="store_true", help="write only the data files")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(func=run)


def _output_dir(args: argparse.Namespace) -> Path:
    trace = Path(args.trace)
    out = Path(args.output) if args.output else trace.with_name(trace.stem + "-analysis")
    return prepare_output_dir(out)


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
    out = _output_dir(args)
    from analyzer import outputs  # heavy imports only once the input is known to be sane

    bar, update = _progress(args.quiet)
    if bar:
        with bar:
            analysis = analyze(args.trace, pids=args.pid, progress=update)
    else:
        analysis = analyze(args.trace, pids=args.pid)
    files = outputs.write_data(analysis, out)
    if not args.no_plots:
        from analyzer.plots import write_plots

        files += write_plots(analysis, out)
    if not args.quiet:
        print(outputs.summary_text(analysis))
        print(f"wrote {len(files)} files to {out}/ (summary.json, pages.csv"
              + (", plots as PNG and SVG)" if not args.no_plots else ")"))
    return 0
