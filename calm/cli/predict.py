"""`calm predict TRACE`: how long QEMU would take to migrate the recorded memory, against link
bandwidth and downtime limit, the table QEMU's scripts/predict_migration.py prints, computed by
replaying the trace (calm.replay.predict)."""

from __future__ import annotations

import argparse
import json
import math

from calm.core import argtypes
from calm.core.errors import CalmError
from calm.core.paths import DEFAULT_TRACE

HELP = "predict QEMU migration times against bandwidth and downtime limit, by replaying a trace"
DESCRIPTION = (
    "Replay the trace on its own memory (as `calm replay -s trace@RATE -a qemu`) for every link "
    "bandwidth (rows) and downtime limit (columns), and print QEMU's total migration time, its "
    "downtime and the bytes it sends; '-' where QEMU does not converge. The rows and columns default "
    "to those of QEMU's scripts/predict_migration.py (its rates are binary, calm's decimal)."
)
EPILOG = "example: calm predict vm.h5 --bandwidth 100Mbit,1Gbit --downtime 300ms,1s,unlimited --json"


def _list(name: str, parse):
    def convert(text: str):
        items = [t.strip() for t in str(text).split(",")]
        if not all(items):
            raise CalmError(f"empty item in {name} list '{text}'")
        return [parse(t) for t in items]
    return argtypes.typed(f"{name} list", convert)


def _downtime(text: str) -> float:
    from calm.core.units import parse_duration

    return math.inf if text.lower() in ("unlimited", "unlim", "inf") else parse_duration(text, "downtime limit")


def _rate(text: str) -> float:
    from calm.core.units import parse_rate

    return parse_rate(text, "bandwidth")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("trace", nargs="?", metavar="TRACE",
                   help=f"trace written by `calm record` (default {DEFAULT_TRACE}); it must record which "
                        "pages were resident (calm 0.2 or later)")
    p.add_argument("--bandwidth", type=_list("bandwidth", _rate), metavar="LIST",
                   help="link bandwidths, comma-separated (default 100Mbit,1Gbit,2Gbit,2.5Gbit,5Gbit,10Gbit,"
                        "25Gbit,40Gbit); QEMU's max-bandwidth is set to each")
    p.add_argument("--downtime", type=_list("downtime", _downtime), metavar="LIST",
                   help="downtime limits, comma-separated, 'unlimited' for none "
                        "(default 125ms,250ms,500ms,1s,5s,unlimited)")
    p.add_argument("--max-bandwidth", type=argtypes.rate(), metavar="RATE",
                   help="QEMU's max-bandwidth for every row instead of the row's link rate (a faster "
                        "link still carries the final copy at its own rate)")
    p.add_argument("--skip", type=argtypes.duration(allow_zero=True), metavar="DURATION",
                   help="leave out the trace's first DURATION (a service's start-up)")
    p.add_argument("--max-time", type=argtypes.duration(), metavar="DURATION",
                   help="count a migration still in pre-copy after this long as not converging "
                        "(default: calm replay's default time limit)")
    p.add_argument("--json", action="store_true", help="print the cells as JSON instead of the tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    from calm.core.paths import check_input_trace
    from calm.core.progress import Progress
    from calm.replay.predict import DEFAULT_BANDWIDTHS_BPS, DEFAULT_DOWNTIMES_S, format_tables, predict
    from calm.replay.trace_map import map_trace

    from calm.replay.own_memory import own_layout

    trace = check_input_trace(args.trace or DEFAULT_TRACE)
    mapped = map_trace(trace, skip_seconds=args.skip or 0.0)
    ram_bytes = own_layout(mapped).n_pages * mapped.page_size  # refuses a trace without residency
    with Progress(quiet=args.quiet) as progress:
        cells = predict(mapped, args.bandwidth or DEFAULT_BANDWIDTHS_BPS, args.downtime or DEFAULT_DOWNTIMES_S,
                        args.max_bandwidth, args.max_time, progress=lambda msg: progress.update(f"replaying {msg}"))
    if args.json:
        from calm.replay.outputs import json_ready

        print(json.dumps(json_ready({
            "tool": "calm predict", "trace": str(trace), "policy": "qemu", "page_size": mapped.page_size,
            "step_seconds": mapped.step_seconds, "ram_bytes": ram_bytes,
            "max_bandwidth_bps": args.max_bandwidth, "cells": [c.to_dict() for c in cells]}), indent=1))
    else:
        print(f"{trace}: QEMU pre-copy replayed on the trace's own memory ({ram_bytes / 2**20:,.1f} MiB)")
        print(format_tables(cells))
    return 0
