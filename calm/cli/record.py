"""`calm record`: record per-page dirtying of live processes (options in the style of `perf record`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calm.core import argtypes
from calm.core.errors import CalmError, UsageError
from calm.core.paths import DEFAULT_TRACE

HELP = "record per-page memory dirtying of processes into an HDF5 trace"
DESCRIPTION = (
    "Record which memory pages live processes dirty, interval by interval, into an HDF5 trace. "
    "Attach to running processes with --pid, or launch a command after -- (calm then exits with "
    "the command's exit status). Stop with Ctrl-C (the trace is closed cleanly) or --duration."
)
EPILOG = (
    "examples:\n"
    "  calm record --pid 1234 --children --interval 500ms --duration 60s -o apache.h5\n"
    "  calm record --duration 10s -o workload.h5 -- python -m calm.workloads.groundtruth --profile service\n"
    "  calm record --pid 1234 -o run.h5 --ready-file rec.ready &\n"
    "  until [ -e rec.ready ]; do sleep 0.1; done; ...run the load...; kill -INT $(cat rec.ready)\n"
    "  calm record --pid $(pgrep -f qemu-system) --region memfd: --backend hash -o guest.h5  (a VM's RAM)\n"
    "backends: soft-dirty (kernel bit 55 via clear_refs/pagemap; needs CONFIG_MEM_SOFT_DIRTY)\n"
    "          hash (reads and hashes writable resident memory each interval; portable, costlier)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--pid", type=argtypes.whole(minimum=1), action="append", default=[],
                        metavar="PID", help="record this running process (repeatable)")
    parser.add_argument("--children", "--follow-fork", dest="children", action="store_true",
                        help="also record every descendant of the targets, as they come and go (also "
                             "once reparented); the recording lasts while any of them runs")
    parser.add_argument("--region", action="append", default=[], metavar="PATTERN",
                        type=argtypes.typed("region pattern", _region_pattern),
                        help="record only mappings whose path (as in /proc/PID/maps) contains PATTERN, "
                             "e.g. 'memfd:' or '/dev/shm/' (a VM's guest RAM, a shared segment) or "
                             "'[heap]'; '[anon]' matches mappings without a path (repeatable: any matches)")
    parser.add_argument("--backend", choices=("auto", "soft-dirty", "hash"), default="auto",
                        help="how dirty pages are detected (default: auto = soft-dirty if the kernel "
                             "supports it, else hash)")
    parser.add_argument("-i", "--interval", type=argtypes.duration(), default=0.1, metavar="DURATION",
                        help="sampling interval, e.g. 100ms or 0.5 (seconds; default 100ms)")
    parser.add_argument("-d", "--duration", type=argtypes.duration(), default=None, metavar="DURATION",
                        help="stop after this long, e.g. 60s or 2min (default: until the targets exit or "
                             "Ctrl-C); a launched command still running then is sent SIGTERM")
    parser.add_argument("--nice", type=argtypes.whole(minimum=1), nargs="?", const=19, default=0,
                        metavar="N", help="lower calm's CPU priority by N (default 19 when given) so the "
                                          "service wins the CPU; the sampling period then stretches, "
                                          "and calm reports the period it achieved")
    parser.add_argument("-o", "--output", default=DEFAULT_TRACE, metavar="FILE",
                        help=f"trace file to write (default {DEFAULT_TRACE})")
    parser.add_argument("-f", "--force", action="store_true",
                        help="overwrite an existing output file (a symlink there is replaced, not followed)")
    parser.add_argument("--no-cmdline", action="store_true",
                        help="store process names only, never command lines (argv may hold secrets); "
                             "the trace is created 0600 either way, as perf.data")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--ready-file", type=Path, default=None, metavar="FILE",
                        help="create FILE (holding calm's pid) once the first sample is on disk: every write "
                             "the targets make after it appears is in the trace, and a stop keeps a trace. Wait for it instead "
                             "of sleeping; a stale FILE is removed at start-up")
    parser.add_argument("--json", action="store_true",
                        help="print a machine-readable summary of the recording on stdout")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to launch and record (after --)")


def _region_pattern(text: str) -> str:
    if not text:
        raise CalmError("empty pattern (give part of a mapping's path, e.g. memfd: or [heap])")
    return text


def run(args: argparse.Namespace) -> int:
    from calm.collector.recorder import RecordOptions, record

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if command and command[0].startswith("-") and not args.pid:
        raise UsageError(f"unknown option {command[0]} (put the command to launch after --)")
    options = RecordOptions(
        output=Path(args.output), pids=args.pid, command=command, children=args.children,
        backend=args.backend, interval=args.interval, duration=args.duration, force=args.force,
        quiet=args.quiet, ready_file=args.ready_file, regions=args.region, nice=args.nice,
        no_cmdline=args.no_cmdline,
    )
    result = record(options)
    size = options.output.stat().st_size
    summary = {
        "output": str(options.output), "bytes": size, "samples": result.samples,
        "processes": result.processes, "dirty_page_events": result.events,
        "seconds": round(result.seconds, 3), "span_s": round(result.span, 3),
        "baseline_read_s": round(result.baseline, 3), "backend": result.backend, "end_reason": result.end_reason,
        "overruns": result.overruns, "command_status": result.command_status,
        "interval_s": args.interval, "period_mean_s": round(result.period_mean, 6),
        "period_p95_s": round(result.period_p95, 6), "cpu_per_round_s": round(result.cpu_per_round, 6),
        "nice": args.nice,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    if not args.quiet:
        per_event = f", {size / result.events:.2f} bytes per dirty-page event" if result.events else ""
        overran = (f"; {result.overruns} of {result.samples} rounds overran the interval (use a longer "
                   "--interval)" if result.overruns else "")
        from calm.core.units import recording_span

        span = recording_span(result.samples, result.span, result.baseline, result.interval)
        print(f"[ calm record: {result.processes} process(es), {span}, with the {result.backend} backend "
              f"({result.end_reason}); {result.events:,} dirty-page events{overran} ]", file=sys.stderr)
        period = (f"[ calm record: sampling period achieved {result.period_mean * 1000:.1f} ms mean, "
                  f"{result.period_p95 * 1000:.1f} ms p95 (asked {args.interval * 1000:g} ms); calm's CPU "
                  f"{result.cpu_per_round * 1000:.1f} ms per round"
                  + (f" at nice +{args.nice}" if args.nice else "") + " ]")
        if result.samples > 1:
            print(period, file=sys.stderr)
        if result.backend == "hash":
            from calm.collector.recording import HASH_BLIND_SPOT

            print(f"[ calm record: note: {HASH_BLIND_SPOT} ]", file=sys.stderr)
        print(f"[ calm record: wrote {options.output} ({size / 2**20:.2f} MiB{per_event}) ]", file=sys.stderr)
    return result.command_status or 0
