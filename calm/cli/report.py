"""`calm report [TRACE] [--replay RESULTS] [--migrate RESULT]...`: one self-contained HTML report.

Like `perf report` / `memray flamegraph`: read what was recorded (`calm.h5` by default) and,
optionally, what `calm replay` computed from it, and leave one file a user can open or mail
(TRACE-report.html next to the trace by default). Inputs are checked before the output is touched,
so a bad input leaves no half-written report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calm.core.paths import DEFAULT_TRACE

HELP = "write one self-contained HTML report of a trace (and its replay results)"
DESCRIPTION = (
    "Analyse a calm trace and write one HTML file with its metadata, the dirtying plots, the hot "
    "regions and symbols and, with --replay, the migration table and bandwidth plots. Figures are "
    "embedded; the file fetches nothing."
)
EPILOG = ("example:\n  calm replay app.h5\n"
          "  calm report app.h5 --replay app-replay/   # writes app-report.html")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", nargs="?", default=DEFAULT_TRACE, metavar="TRACE",
                        help=f"trace written by `calm record` (default {DEFAULT_TRACE})")
    parser.add_argument("--replay", metavar="RESULTS", help="results.json written by `calm replay` "
                        "(or the directory holding it)")
    parser.add_argument("--migrate", action="append", metavar="RESULT",
                        help="migrate.json written by `calm migrate` (or its directory): adds the real "
                             "migration beside calm's prediction (repeatable)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="HTML file to write (default TRACE-report.html next to the trace)")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def _results_path(text: str) -> Path:
    path = Path(text)
    return path / "results.json" if path.is_dir() else path


def run(args: argparse.Namespace) -> int:
    from calm.core.paths import check_input_trace, check_output_path, default_output

    trace = check_input_trace(args.trace)
    output = Path(args.output) if args.output else default_output(trace, "-report.html")
    check_output_path(output, force=args.force)
    from calm.report import build_report, load_results, write_report

    results_path = _results_path(args.replay) if args.replay else None
    results = load_results(results_path) if results_path else None
    from calm.report.migrate_section import load_migration

    migrations = [load_migration(m) for m in args.migrate or []]
    from calm.analyzer import analyze
    from calm.core.progress import Progress
    from calm.trace.reader import Trace

    with Trace(trace) as opened:  # a missing or foreign file is one error line before any output
        identity = opened.identity
    if results is not None:
        from calm.core.errors import CalmError
        from calm.report.replay_results import recording_mismatch

        level, why = recording_mismatch(results, identity, trace.name, str(results_path))
        if level == "refuse":
            raise CalmError(why)
        if level == "warn" and not args.quiet:
            print(f"calm report: warning: {why}; the report says so", file=sys.stderr)

    with Progress(quiet=args.quiet) as progress:
        progress.update(f"calm report: analysing {trace}")
        analysis = analyze(trace, progress=lambda stage, done, total: progress.update(
            f"calm report: analysing ({stage} {done}/{total} samples)"))
        progress.update("calm report: drawing figures")
        html = build_report(analysis, results, results_source=str(results_path or ""), migrations=migrations)
    write_report(html, output, force=args.force)
    if not args.quiet:
        print(f"calm report: wrote {output} ({len(html.encode()) / 2**20:.2f} MiB, self-contained)",
              file=sys.stderr)
    return 0
