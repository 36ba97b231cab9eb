"""`calm report TRACE.h5 [--replay RESULTS] -o report.html`: one self-contained HTML report.

Like `perf report` / `memray flamegraph`: read what was recorded (and, optionally, what
`calm replay` computed from it) and leave one file a user can open or mail. Inputs are checked
before the output is touched, so a bad input leaves no half-written report.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from calm.errors import CalmError

DEFAULT_OUTPUT = "report.html"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write one self-contained HTML report of a trace (and its replay results)",
        description="Analyse a calm trace and write one HTML file with its metadata, the dirtying "
                    "plots, the hot regions and symbols and, with --replay, the migration table and "
                    "bandwidth plots. Figures are embedded; the file fetches nothing.",
        epilog="example:\n  calm replay app.h5 -o app-replay\n"
               "  calm report app.h5 --replay app-replay/results.json -o app-report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", metavar="TRACE.h5", help="trace written by `calm record`")
    parser.add_argument("--replay", metavar="RESULTS", help="results.json written by `calm replay` "
                        "(or the directory holding it)")
    parser.add_argument("-o", "--output", metavar="FILE", default=DEFAULT_OUTPUT,
                        help=f"HTML file to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(func=run)


def check_output_file(path: Path, force: bool) -> None:
    """Refuses an existing file without --force, a directory, or a missing/read-only parent."""
    if path.is_dir():
        raise CalmError(f"output {path} is a directory; give a file name such as {path / DEFAULT_OUTPUT}")
    if path.exists() and not force:
        raise CalmError(f"output {path} exists; use --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CalmError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CalmError(f"output directory {parent} is not writable")


def _results_path(text: str) -> Path:
    path = Path(text)
    return path / "results.json" if path.is_dir() else path


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    check_output_file(output, args.force)
    from calm.report import build_report, load_results, write_report

    results_path = _results_path(args.replay) if args.replay else None
    results = load_results(results_path) if results_path else None
    from analyzer import analyze
    from collector.progress import Progress
    from collector.trace_reader import Trace

    Trace(args.trace).close()  # a missing or foreign file is one error line before any output

    with Progress(quiet=args.quiet) as progress:
        progress.update(f"calm report: analysing {args.trace}")
        analysis = analyze(args.trace, progress=lambda stage, done, total: progress.update(
            f"calm report: analysing ({stage} {done}/{total} samples)"))
        progress.update("calm report: drawing figures")
        html = build_report(analysis, results, results_source=str(results_path or ""))
    write_report(html, output)
    if not args.quiet:
        print(f"calm report: wrote {output} ({len(html.encode()) / 2**20:.2f} MiB, self-contained)",
              file=sys.stdout)
    return 0
