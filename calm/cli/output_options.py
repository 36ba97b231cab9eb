"""The options every command that writes a directory of results shares, spelled one way.

`calm analyze`, `replay`, `sweep`, `model` and `migrate` each write a directory of data files and
plots and print a summary; users move between them the way they move between `perf record` and
`perf report`, so -o/-f/--no-plots/--json/-q mean the same thing in each.
"""

from __future__ import annotations

import argparse


def add_output_options(parser: argparse.ArgumentParser, *, output_help: str, earlier: str,
                       json_help: str, default: str | None = None,
                       no_plots_help: str = "write only the data files") -> None:
    """-o DIR (default `default`, described by `output_help`), -f (overwrite the files of an earlier
    `earlier`), --no-plots, --json (`json_help`) and -q."""
    parser.add_argument("-o", "--output", metavar="DIR", default=default, help=output_help)
    parser.add_argument("-f", "--force", action="store_true", help=f"overwrite the files of an earlier {earlier}")
    parser.add_argument("--no-plots", action="store_true", help=no_plots_help)
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
