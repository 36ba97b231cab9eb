"""Where calm writes, and when it refuses to.

The policy every command follows (as `perf record` / `perf report` users expect):
- Input: analyze, replay and report read `calm.h5` when no trace is given (`DEFAULT_TRACE`), as
  `perf report` reads `perf.data`.
- Output goes next to the input by default (`default_output`: TRACE-analysis/, TRACE-replay/,
  TRACE-report.html).
- Nothing is overwritten without `-f/--force`: an existing output file, or an output directory
  that already holds files, is refused before any work starts.
- Everything is checked before anything is created, so a refused command leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from calm.core.errors import CalmError

DEFAULT_TRACE = "calm.h5"


def default_output(trace: str | os.PathLike, suffix: str) -> Path:
    """The output next to `trace`: `run.h5` with suffix `-replay` -> `run-replay`."""
    trace = Path(trace)
    return trace.with_name(trace.stem + suffix)


def check_input_trace(path: str | os.PathLike) -> Path:
    """A trace path that exists and is a file, or one clear error (exit 1)."""
    path = Path(path)
    if not path.exists():
        hint = " (record one with `calm record`, or name the trace)" if str(path) == DEFAULT_TRACE else ""
        raise CalmError(f"trace {path} does not exist{hint}")
    if path.is_dir():
        raise CalmError(f"trace {path} is a directory, not a trace file")
    return path


def _check_parent(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CalmError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CalmError(f"output directory {parent} is not writable")


def check_output_path(path: Path, *, force: bool) -> None:
    """Refuses an output file we could not or should not write, before any work starts."""
    try:
        exists = path.exists() or path.is_symlink()
        is_dir = path.is_dir()
    except OSError as exc:
        raise CalmError(f"cannot access output {path}: {exc.strerror}") from None
    if is_dir:
        raise CalmError(f"output {path} is a directory; give a file name")
    if exists and not force:
        raise CalmError(f"output {path} exists; use --force to overwrite it")
    _check_parent(path)


def check_output_dir(out: Path, *, force: bool) -> None:
    """Refuses a file in the way, a directory that already holds files (without --force), or a
    missing/read-only parent; creates nothing."""
    if out.exists() and not out.is_dir():
        raise CalmError(f"output {out} exists and is not a directory")
    if out.is_dir():
        if not force and any(out.iterdir()):
            raise CalmError(f"output directory {out} is not empty; use --force to overwrite its files")
        if not os.access(out, os.W_OK | os.X_OK):
            raise CalmError(f"output directory {out} is not writable")
        return
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise CalmError(f"cannot create output directory {out}: {ancestor} is not a writable directory")


def prepare_output_dir(out: Path, *, force: bool = True) -> Path:
    """Checks (see check_output_dir) and creates the output directory (parents too)."""
    check_output_dir(out, force=force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CalmError(f"cannot create output directory {out}: {exc.strerror}") from exc
    return out
