"""The `calm` command: one entry point, subcommands in the style of `perf record` / `perf report`.

Each subsystem owns its subcommands: a module listed in `SUBCOMMAND_MODULES` exposes
`register(subparsers)`, which adds its parsers and sets `func` on them. `func(args)` returns an exit
code. `CalmError` becomes one line on stderr; nothing else is caught, so real bugs stay visible.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from calm import __version__
from calm.errors import CalmError

SUBCOMMAND_MODULES = (
    "collector.cli",
    "analyzer.cli",
    "replay.cli",
    "calm.report_cli",
    "calm.demo",
    "calm.load_cli",
)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other calm error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="calm",
        description="Record how a live service dirties its memory and replay it into live-migration cost models.",
    )
    parser.add_argument("--version", action="version", version=f"calm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that subsystem is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except CalmError as exc:
        print(f"calm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("calm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
