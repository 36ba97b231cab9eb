#!/usr/bin/env python3
"""How long does `calm` take to start, and how soon does `calm record` take its first sample?

Measured from outside, with CLOCK_MONOTONIC (one clock for every process on the machine):

- *version*: spawn of `calm --version` to its exit.
- *first sample*: spawn of `calm record -o T.h5 --duration 0.5 -- sleep 5` to the end of the
  trace's first sample, i.e. `start_monotonic + t_end[0]` read from the trace itself
  (`start_monotonic` is the CLOCK_MONOTONIC origin of the trace's `t_start`/`t_end`). This includes
  one sampling interval (the default 100 ms): a sample ends one interval after recording started.
- *recording started*: spawn to `start_monotonic` (calm's clock origin, taken before it launches
  the command and takes the baseline).

Baseline in the same run: `python -c pass` with the same interpreter (spawn to exit), so a busy
machine shows up as a slower baseline. Several calm installations can be compared in one run
(`--calm A --calm B`); runs are interleaved (A, B, baseline, A, B, baseline, ...) so load spikes
hit all of them alike. Medians and the slowest run are reported.

    python scripts/bench_startup.py [--calm PATH_TO_calm]... [--runs 15]
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from calm.core.argtypes import OneLineErrorParser, whole


def _python_of(calm: str) -> str:
    """The interpreter of a `calm` console script (its #! line), for the baseline."""
    first = Path(calm).read_text(errors="replace").splitlines()[0]
    return first[2:].strip() if first.startswith("#!") else sys.executable


def time_version(calm: str) -> float:
    t = time.monotonic()
    subprocess.run([calm, "--version"], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def time_python(python: str) -> float:
    t = time.monotonic()
    subprocess.run([python, "-c", "pass"], check=True)
    return time.monotonic() - t


def time_first_sample(calm: str, tmp: Path) -> tuple[float, float]:
    """(spawn to recording start, spawn to the end of the first sample), seconds."""
    out = tmp / "startup.h5"
    spawned = time.monotonic()
    subprocess.run([calm, "record", "-q", "-f", "-o", str(out), "--duration", "0.5", "--", "sleep", "5"],
                   check=True, cwd=tmp)
    with h5py.File(out, "r") as f:
        start = float(f.attrs["start_monotonic"])
        first_end = float(f["samples/t_end"][0])
    return start - spawned, start + first_end - spawned


def _row(name: str, values: list[float]) -> str:
    return f"| {name} | {statistics.median(values) * 1e3:.0f} ms | {max(values) * 1e3:.0f} ms |"


def main() -> int:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calm", action="append", default=[], metavar="PATH",
                   help="a calm console script to measure (repeatable; default: the one next to this python)")
    p.add_argument("--runs", type=whole(minimum=1), default=15)
    args = p.parse_args()
    calms = args.calm or [shutil.which("calm", path=str(Path(sys.executable).parent)) or "calm"]
    for calm in calms:
        if not shutil.which(calm):
            p.error(f"{calm} is not an executable calm")
    calms = [os.path.abspath(shutil.which(calm)) for calm in calms]
    print(f"# {platform.node()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"Python {platform.python_version()}, load average at start {os.getloadavg()[0]:.2f}")
    python = _python_of(calms[0])
    results: dict[str, dict[str, list[float]]] = {c: {"version": [], "started": [], "first": []} for c in calms}
    baseline: list[float] = []
    with tempfile.TemporaryDirectory(prefix="calm-bench-startup-") as tmp:
        for calm in calms:  # warm the page cache once, unmeasured
            time_version(calm)
            time_first_sample(calm, Path(tmp))
        for _ in range(args.runs):
            for calm in calms:
                results[calm]["version"].append(time_version(calm))
                started, first = time_first_sample(calm, Path(tmp))
                results[calm]["started"].append(started)
                results[calm]["first"].append(first)
            baseline.append(time_python(python))
    print(f"# {args.runs} interleaved runs each; load average at end {os.getloadavg()[0]:.2f}")
    print("| what | median | slowest |\n|---|---|---|")
    print(_row(f"baseline: `{python} -c pass`", baseline))
    for calm in calms:
        r = results[calm]
        print(_row(f"`{calm} --version`", r["version"]))
        print(_row(f"`{calm} record`: spawn to recording start", r["started"]))
        print(_row(f"`{calm} record`: spawn to end of first sample", r["first"]))
    base = statistics.median(baseline)
    for calm in calms:
        first = statistics.median(results[calm]["first"])
        print(f"# {calm}: first sample at {first * 1e3:.0f} ms = {first / base:.1f}x the interpreter's start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
