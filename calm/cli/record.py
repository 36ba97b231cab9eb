"""`calm record`: record per-page dirtying of live processes (options in the style of `perf record`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calm.core import argtypes
from calm.core.errors import UsageError
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
    "backends: soft-dirty (kernel bit 55 via clear_refs/pagemap; needs CONFIG_MEM_SOFT_DIRTY)\n"
    "          hash (reads and hashes writable resident memory each interval; portable, costlier)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--pid", type=argtypes.whole(minimum=1), action="append", default=[],
                        metavar="PID", help="record this running process (repeatable)")
    parser.add_argument("--children", "--follow-fork", dest="children", action="store_true",
                        help="also record every descendant of the targets, as they come and go")
    parser.add_argument("--backend", choices=("auto", "soft-dirty", "hash"), default="auto",
                        help="how dirty pages are detected (default: auto = soft-dirty if the kernel "
                             "supports it, else hash)")
    parser.add_argument("-i", "--interval", type=argtypes.duration(), default=0.1, metavar="DURATION",
                        help="sampling interval, e.g. 100ms or 0.5 (seconds; default 100ms)")
    parser.add_argument("-d", "--duration", type=argtypes.duration(), default=None, metavar="DURATION",
                        help="stop after this long, e.g. 60s or 2min (default: until the targets exit or "
                             "Ctrl-C); a launched command still running then is sent SIGTERM")
    parser.add_argument("-o", "--output", default=DEFAULT_TRACE, metavar="FILE",
                        help=f"trace file to write (default {DEFAULT_TRACE})")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--json", action="store_true",
                        help="print a machine-readable summary of the recording on stdout")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to launch and record (after --)")


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
        quiet=args.quiet,
    )
    result = record(options)
    size = options.output.stat().st_size
    summary = {
        "output": str(options.output), "bytes": size, "samples": result.samples,
        "processes": result.processes, "dirty_page_events": result.events,
        "seconds": round(result.seconds, 3), "backend": result.backend, "end_reason": result.end_reason,
        "overruns": result.overruns, "command_status": result.command_status,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    if not args.quiet:
        per_event = f", {size / result.events:.2f} bytes per dirty-page event" if result.events else ""
        overran = (f"; {result.overruns} of {result.samples} rounds overran the interval (use a longer "
                   "--interval)" if result.overruns else "")
        print(f"[ calm record: {result.samples} samples of {result.processes} process(es) over "
              f"{result.seconds:.1f} s with the {result.backend} backend ({result.end_reason}); "
              f"{result.events:,} dirty-page events{overran} ]", file=sys.stderr)
        print(f"[ calm record: wrote {options.output} ({size / 2**20:.2f} MiB{per_event}) ]", file=sys.stderr)
    return result.command_status or 0
