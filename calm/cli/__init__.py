"""The `calm` command: subcommands in the style of `perf record` / `perf report`.

Every command is one module of this package with the same small shape (memray's command
protocol, damo's table): `HELP` (one line for `calm --help`), `configure(parser)` adding its
options, and `run(args) -> int`. `COMMANDS` below is the one place they are registered. A command
module imports only argparse and `calm.core` at the top, so `calm --version` and the parsing of
any command line stay fast; the heavy libraries (numpy, h5py, matplotlib) load inside `run`.

Errors: argparse usage errors and `UsageError` exit 2, `CalmError` exits 1, each as one line
`calm COMMAND: error: MESSAGE` on stderr; Ctrl-C is one line and exit 130, from the first line
of calm that runs (`calm.early_interrupt` covers the start-up, before `main` catches
KeyboardInterrupt). Nothing else is caught, so real bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from calm.core.argtypes import OneLineErrorParser
from calm.core.errors import CalmError
from calm.core import interrupt
from calm.core.version import __version__

COMMANDS = {
    "record": "calm.cli.record",
    "analyze": "calm.cli.analyze",
    "replay": "calm.cli.replay",
    "sweep": "calm.cli.sweep",
    "model": "calm.cli.model",
    "predict": "calm.cli.predict",
    "report": "calm.cli.report",
    "demo": "calm.cli.demo",
    "load": "calm.cli.load",
    "migrate": "calm.cli.migrate",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="calm",
        description="Record how a live service dirties its memory and replay it into live-migration cost models.",
    )
    parser.add_argument("--version", action="version", version=f"calm {__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=OneLineErrorParser)
    parser.set_defaults(_subparsers={})
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                                    epilog=getattr(module, "EPILOG", None),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(sub)
        sub.set_defaults(func=module.run)
        parser.get_default("_subparsers")[name] = sub
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the command's own parser: "calm record: error: ..."
        (args._subparsers.get(args.subcommand) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    prog = f"calm {args.subcommand}"
    try:
        import calm

        if signal.getsignal(signal.SIGINT) is calm.early_interrupt:  # start-up is over
            interrupt.install()
        return int(args.func(args) or 0)
    except CalmError as exc:
        if interrupt.was_interrupted():  # an error the interrupt itself caused
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except ImportError:
        # Ctrl-C inside a C extension's import (numpy's PyCapsule_Import) surfaces as an ImportError
        # of the interrupted module, not as KeyboardInterrupt: it is still the interrupt
        if interrupt.was_interrupted():
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        raise
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
