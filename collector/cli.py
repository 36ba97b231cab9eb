"""`calm record`: the collector's command line (options in the style of `perf record`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from calm.errors import CalmError
from collector.recorder import RecordOptions, record

DEFAULT_OUTPUT = "calm.h5"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record",
        help="record per-page memory dirtying of processes into an HDF5 trace",
        description=(
            "Record which memory pages live processes dirty, interval by interval, into an HDF5 "
            "trace. Attach to running processes with --pid, or launch a command after --. "
            "Stop with Ctrl-C (the trace is closed cleanly) or --duration."
        ),
        epilog=(
            "examples:\n"
            "  calm record --pid 1234 --children --interval 0.5 --duration 60 -o apache.h5\n"
            "  calm record --duration 10 -o workload.h5 -- python -m collector.workload --profile service\n"
            "backends: soft-dirty (kernel bit 55 via clear_refs/pagemap; needs CONFIG_MEM_SOFT_DIRTY)\n"
            "          hash (reads and hashes writable resident memory each interval; portable, costlier)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-p", "--pid", type=int, action="append", default=[], metavar="PID",
                        help="record this running process (repeatable)")
    parser.add_argument("--children", action="store_true",
                        help="also record every descendant of the targets, as they come and go")
    parser.add_argument("--backend", choices=("auto", "soft-dirty", "hash"), default="auto",
                        help="how dirty pages are detected (default: auto = soft-dirty if the kernel "
                             "supports it, else hash)")
    parser.add_argument("-i", "--interval", type=float, default=0.1, metavar="SECONDS",
                        help="sampling interval in seconds (default 0.1)")
    parser.add_argument("-d", "--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds (default: until the targets exit or Ctrl-C); "
                             "a launched command still running then is sent SIGTERM")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="FILE",
                        help=f"trace file to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="command to launch and record (after --)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if command and command[0].startswith("-") and not args.pid:
        raise CalmError(f"unknown option {command[0]} (put the command to launch after --)")
    options = RecordOptions(
        output=Path(args.output), pids=args.pid, command=command, children=args.children,
        backend=args.backend, interval=args.interval, duration=args.duration, force=args.force,
        quiet=args.quiet,
    )
    result = record(options)
    size = options.output.stat().st_size
    per_event = f", {size / result.events:.2f} bytes per dirty-page event" if result.events else ""
    if not args.quiet:
        print(
            f"calm record: {result.samples} samples of {result.processes} process(es) over "
            f"{result.seconds:.1f} s with the {result.backend} backend ({result.end_reason}); "
            f"{result.events:,} dirty-page events; wrote {options.output} "
            f"({size / 2**20:.2f} MiB{per_event})"
            + (f"; {result.overruns} of {result.samples} rounds overran the interval "
               "(use a longer --interval)" if result.overruns else ""),
        )
    return 0
