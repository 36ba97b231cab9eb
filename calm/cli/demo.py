"""`calm demo [-o DIR]`: the whole value of calm in one command, on the built-in workload.

It starts the ground-truth workload with its service-like profile (a hot and a cold set whose heat
moves between two phases), records it with the best backend this kernel has (the recorder says
which and why), analyses the trace, replays it through CALM and its baselines in the slides' four
scenarios, and writes report.html beside the trace, plots and tables. Everything runs in-process
through the same Python APIs the subcommands use, so the demo shows exactly what they do.

Why the workload is started first and attached to (instead of `calm record -- CMD`): the workload
fills its memory before it starts its write rounds; attaching once it is ready keeps that one-off
fill out of the trace, so the plots show the steady service.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from calm.core import argtypes
from calm.core.errors import CalmError
from calm.core.paths import prepare_output_dir
from calm.core.ready import NotReady, wait_for

DEFAULT_OUTPUT = "calm-demo"
DEFAULT_DURATION = 20.0
WORKLOAD_PAGES = 8192  # 32 MiB: big enough for a real heatmap, small enough for the hash backend
WORKLOAD_INTERVAL = 0.1
SWEEP_POINTS = 8
READY_TIMEOUT = 60.0
DEMO_FILES = ("trace.h5", "report.html", "analysis", "replay")


HELP = "record, analyse and replay the built-in workload; write an HTML report"
DESCRIPTION = (
    "Run the built-in service-like workload, record it with the best backend this kernel has, analyse "
    "the trace, replay it through CALM, Clark, Xen, QEMU and the optimal fixed bandwidth in the slides' "
    "four scenarios, and write report.html with the trace, plots and tables. Takes about the recording "
    "time plus half a minute."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="DIR", default=DEFAULT_OUTPUT,
                        help=f"directory for everything the demo writes (default {DEFAULT_OUTPUT}/)")
    parser.add_argument("-d", "--duration", type=argtypes.duration(), default=DEFAULT_DURATION, metavar="DURATION",
                        help=f"how long to record the workload (default {DEFAULT_DURATION:g}s)")
    parser.add_argument("-f", "--force", action="store_true",
                        help="overwrite the files of an earlier demo in DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def _check_output(out: Path, force: bool) -> None:
    existing = [name for name in DEMO_FILES if (out / name).exists()]
    if existing and not force:
        raise CalmError(f"{out} already holds {', '.join(existing)} of an earlier demo; "
                        "use --force to overwrite them or -o to pick another directory")


class Workload:
    """The built-in workload as a child process, stopped (SIGTERM) when the demo leaves."""

    def __init__(self, out: Path) -> None:
        self.ready_file = out / ".workload-ready"
        self.ready_file.unlink(missing_ok=True)
        self.args = ["-m", "calm.workloads.groundtruth", "--profile", "service", "--pages", str(WORKLOAD_PAGES),
                     "--interval", str(WORKLOAD_INTERVAL), "--seed", "1"]
        self.proc = subprocess.Popen([sys.executable, *self.args, "--ready-file", str(self.ready_file)],
                                     stdin=subprocess.DEVNULL)

    def wait_ready(self) -> int:
        try:
            wait_for(self.ready_file, self.proc, "the built-in workload", READY_TIMEOUT)
        except NotReady as exc:
            raise CalmError(str(exc)) from None
        self.ready_file.unlink(missing_ok=True)
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ready_file.unlink(missing_ok=True)


def _say(quiet: bool, message: str) -> None:
    """Stage headers: one line on stderr, on a terminal or not."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _record(out: Path, duration: float, quiet: bool):
    from calm.collector.recorder import RecordOptions, record

    trace = out / "trace.h5"
    workload = Workload(out)
    try:
        pid = workload.wait_ready()
        _say(quiet, f"calm demo: [1/4] recording the built-in service workload (pid {pid}, "
                    f"{WORKLOAD_PAGES * 4096 // 2**20} MiB) for {duration:g} s")
        result = record(RecordOptions(output=trace, pids=[pid], interval=WORKLOAD_INTERVAL,
                                      duration=duration, force=True, quiet=quiet))
    finally:
        workload.stop()
    return trace, result, workload.args


def _analyze(trace: Path, out: Path, quiet: bool):
    from calm.analyzer import analyze
    from calm.analyzer.outputs import write_data
    from calm.analyzer.plots import write_plots
    from calm.core.progress import Progress

    _say(quiet, "calm demo: [2/4] analysing the trace")
    analysis_dir = prepare_output_dir(out / "analysis")
    with Progress(quiet=quiet) as progress:
        analysis = analyze(trace, progress=lambda stage, done, total: progress.update(
            f"analysing: {stage} {done}/{total} samples"))
        progress.update("analysing: writing plots and tables")
        write_data(analysis, analysis_dir)
        write_plots(analysis, analysis_dir)
    return analysis, analysis_dir


def _replay(trace: Path, out: Path, quiet: bool):
    from calm.core.progress import Progress
    from calm.replay.outputs import TABLE_COLUMNS, json_ready, write_csv, write_json
    from calm.replay.plots import write_replay_plots
    from calm.replay.defaults import SLIDE_SCENARIOS
    from calm.replay.runner import run_replay

    _say(quiet, "calm demo: [3/4] replaying the trace through calm, clark, xen, qemu and fixed "
                "in the slides' four scenarios")
    replay_dir = prepare_output_dir(out / "replay")
    with Progress(quiet=quiet) as progress:
        report = run_replay(str(trace), list(SLIDE_SCENARIOS), sweep_points=SWEEP_POINTS,
                            progress=lambda message: progress.update(f"replaying {message}"))
        progress.update("replaying: writing plots and tables")
        rows = report.table()
        write_csv(rows, TABLE_COLUMNS, replay_dir / "results.csv")
        results_json = write_json(report.to_dict(), replay_dir / "results.json")
        write_replay_plots(json_ready(report.to_dict()), replay_dir)
    return rows, results_json, replay_dir


def _report(analysis, results_json: Path, out: Path, quiet: bool) -> Path:
    from calm.report import build_report, load_results, write_report
    from calm.core.progress import Progress

    _say(quiet, "calm demo: [4/4] writing the HTML report")
    with Progress(quiet=quiet) as progress:
        progress.update("drawing the report's figures")
        results = load_results(results_json)  # the same contract `calm report --replay` reads
        html = build_report(analysis, results, results_source=str(results_json))
    return write_report(html, out / "report.html", force=True)  # _check_output asked for --force


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(args.output)
    _check_output(out, args.force)
    out = prepare_output_dir(out)
    trace, recorded, workload_args = _record(out, args.duration, args.quiet)
    if recorded.samples == 0:
        raise CalmError("the recording holds no sample; try a longer --duration")
    analysis, analysis_dir = _analyze(trace, out, args.quiet)
    rows, results_json, replay_dir = _replay(trace, out, args.quiet)
    report = _report(analysis, results_json, out, args.quiet)
    if not args.quiet:
        from calm.analyzer.outputs import summary_text
        from calm.replay.outputs import format_table

        overran = f"; {recorded.overruns} rounds overran the interval" if recorded.overruns else ""
        from calm.core.units import recording_span

        span = recording_span(recorded.samples, recorded.span, recorded.baseline, recorded.interval)
        print(f"calm demo: recorded {span}, with the {recorded.backend} backend "
              f"({recorded.events:,} dirty-page events{overran})")
        print(summary_text(analysis))
        print()
        print(format_table(rows))
        print()
        print(f"calm demo: done in {time.monotonic() - started:.0f} s; everything is in {out}/")
        width = max(len(str(p)) for p in (report, trace, analysis_dir, replay_dir)) + 3
        for path, what in ((report, "the report: open it in a browser"),
                           (trace, "the trace (calm analyze / replay / report read it)"),
                           (analysis_dir, "dirtying plots (PNG, SVG) and tables (summary.json, CSV)"),
                           (replay_dir, "migration table (results.csv, results.json) and plots")):
            shown = f"{path}/" if path.is_dir() else str(path)
            print(f"  {shown:<{width}}{what}")
        print(f"  the workload was: python {' '.join(workload_args)}")
    return 0
