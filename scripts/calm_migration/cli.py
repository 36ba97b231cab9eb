"""Command line of scripts/validate-migration (one-line usage errors, exit 2; harness errors exit 1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calm.core import argtypes
from calm.core.argtypes import OneLineErrorParser
from calm.core.errors import CalmError

from calm_vm import VmError

from . import MigrationError

EPILOG = """\
examples:
  validate-migration fetch                       # QEMU >= 9.0, kernel, initramfs into the cache
  validate-migration grid -o migration-grid      # the full grid (hours; resumable)
  validate-migration grid -o /tmp/g --workloads uniform --bandwidths 100,400 --downtimes 300 --repeats 1
  validate-migration table migration-grid        # the markdown table and the goals' summary
  validate-migration repredict migration-grid    # both predictions again (after a simulator change)

Each run boots a source and a destination QEMU TCG guest (256 MiB, workload in an initramfs),
records the source with `calm record --region memfd:memory-backend-memfd`, measures
calc-dirty-rate, migrates over tcp:127.0.0.1 with max-bandwidth and downtime-limit set, and
predicts the migration with `calm replay -s trace@LINK -a qemu` and with QEMU's predictor method.
"""


def _numbers(kind):
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(x) for x in text.split(",") if x)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive comma-separated numbers, got {text!r}")
        return values
    parse.__name__ = "list"
    return parse


def build_parser() -> argparse.ArgumentParser:
    from .grid import BANDWIDTHS_MBIT, DOWNTIMES_MS, WORKLOADS

    parser = OneLineErrorParser(prog="validate-migration", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Validate calm's replay against real QEMU live migrations, "
                                            "next to QEMU's own calc-dirty-rate predictor.")
    sub = parser.add_subparsers(dest="action", required=True, parser_class=OneLineErrorParser)
    fetch = sub.add_parser("fetch", help="fetch QEMU >= 9.0, the guest kernel, and build the initramfs")
    fetch.add_argument("--qemu", metavar="PATH", help="a QEMU >= 9.0 to check instead of fetching one")
    grid = sub.add_parser("grid", help="run (or resume) the grid of real migrations")
    grid.add_argument("-o", "--output", required=True, metavar="DIR", help="results directory (resumed if it exists)")
    grid.add_argument("--workloads", default=",".join(WORKLOADS), metavar="LIST",
                      help=f"comma-separated, of {', '.join(WORKLOADS)} (default all)")
    grid.add_argument("--bandwidths", type=_numbers(float), default=BANDWIDTHS_MBIT, metavar="MBITS",
                      help="max-bandwidth values in Mbit/s (default 50,100,200,400)")
    grid.add_argument("--downtimes", type=_numbers(int), default=DOWNTIMES_MS, metavar="MS",
                      help="downtime-limit values in ms (default 100,300,1000)")
    grid.add_argument("--repeats", type=argtypes.whole(minimum=1), default=2, help="runs per cell (default 2)")
    grid.add_argument("--record", type=argtypes.duration(), default=20.0, metavar="DURATION",
                      help="how long the source is recorded before migrating (default 20s)")
    grid.add_argument("--deadline", type=argtypes.duration(), default=120.0, metavar="DURATION",
                      help="cancel a migration still running after this long: it did not converge (default 120s)")
    grid.add_argument("--qemu", metavar="PATH", help="QEMU binary (>= 9.0; default: the host's if new enough, "
                                                     "else fetched from Debian backports)")
    again = sub.add_parser("repredict", help="recompute both predictions of every finished run of a grid "
                                             "(from its kept trace and measurements), e.g. after the simulator changed")
    again.add_argument("directory", help="a grid's results directory")
    table = sub.add_parser("table", help="print the grid's markdown table and the goals' summary")
    table.add_argument("directory", help="a grid's results directory")
    table.add_argument("--json", action="store_true", help="print the summary as JSON instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.action == "table":
            from .table import load, markdown, summary, summary_text

            runs = load(Path(args.directory))
            if not runs:
                raise MigrationError(f"no run.json under {args.directory}")
            if args.json:
                print(json.dumps(summary(runs), indent=1, default=float))
            else:
                print(markdown(runs))
                print()
                print(summary_text(summary(runs)))
            return 0
        if args.action == "repredict":
            from .run import repredict

            runs = sorted(Path(args.directory).glob("*/*/*/run.json"))
            if not runs:
                raise MigrationError(f"no run.json under {args.directory}")
            from .grid import kept_link

            kept = kept_link(Path(args.directory))  # the grid's link, as `grid` last measured it
            link = float(kept["link_bit_s"]) if kept else None
            for path in runs:
                repredict(path.parent, link)
            said = f" with the grid's link ({link / 1e9:.2f} Gbit/s, {kept['method']})" if kept else ""
            print(f"validate-migration: predictions recomputed for {len(runs)} runs{said}", file=sys.stderr)
            return 0
        from calm_vm.kernels import fetch as fetch_kernel

        from .guest import build_initramfs
        from .qemu_binary import find

        qemu = find(args.qemu)
        if args.action == "fetch":
            kernel = fetch_kernel("6.12")
            print(f"validate-migration: QEMU {qemu.version_text} ({qemu.binary}), kernel {kernel.release}, "
                  f"initramfs {build_initramfs()}")
            return 0
        from .grid import GridSpec, run_grid

        grid = GridSpec(workloads=tuple(w for w in args.workloads.split(",") if w),
                        bandwidths_mbit=args.bandwidths, downtimes_ms=args.downtimes, repeats=args.repeats,
                        record_s=args.record, deadline_s=args.deadline)

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        done = run_grid(grid, qemu, Path(args.output), log)
        log(f"validate-migration: {len(done)} runs in {args.output}; see: validate-migration table {args.output}")
        return 0
    except (MigrationError, CalmError, VmError) as exc:
        print(f"validate-migration: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
