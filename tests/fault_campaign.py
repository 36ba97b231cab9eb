"""The damaged-trace campaign of the fault suite (issue 12): single-byte flips and truncations of a
real trace, each read by `calm analyze`, `calm replay` and `calm report`.

Every run must end in one of two ways: exit 0 with complete, correct output, or exit 1 with one
error line; never a traceback, a signal or more than 60 s. "Correct" is checked against the
intact trace's outputs: a damaged file either gives the same headline numbers (the damage hit
bytes that carry no data, e.g. free space or a timestamp) or says in its output that it read a
damaged file. The campaign counts the outcomes; tests/test_faults_damaged.py asserts on them and
prints them (the README's RELIABILITY section quotes that line).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fault_helpers import Outcome, run_calm

READERS = ("analyze", "replay", "report")


def reader_args(command: str, trace: Path, out: Path) -> list[str]:
    """The reader commands, as light as they can be while still reading everything."""
    if command == "analyze":
        return ["analyze", str(trace), "--no-plots", "--json", "-q", "-o", str(out)]
    if command == "replay":
        return ["replay", str(trace), "--no-plots", "--json", "-q", "-s", "64MiB@1Gbit",
                "-a", "calm,xen,fixed", "-o", str(out)]
    return ["report", str(trace), "-q", "-o", str(out)]


def headline(command: str, outcome: Outcome, out: Path) -> dict:
    """What must match the intact trace's output: the numbers, not the file names in it."""
    if command == "analyze":
        summary = json.loads(outcome.stdout)
        return {"samples": summary["samples"], "service": summary["service"],
                "dirty_pages_per_sample": summary["dirty_pages_per_sample"],
                "damaged": any(("cut short" in n or "died in the middle" in n or "damaged part" in n)
                               for n in summary["notes"])}
    if command == "replay":
        results = json.loads((out / "results.json").read_text())
        return {"rows": json.loads(outcome.stdout), "samples": results["workload"]["n_steps"], "damaged": False}
    html = out.read_text(encoding="utf-8")
    return {"complete": len(html) > 10_000 and html.rstrip().endswith("</html>"), "damaged": False}


def judge(command: str, outcome: Outcome, out: Path, reference: dict) -> str:
    """"ok" for the right output: the intact trace's numbers, or other numbers from a file the
    output says was damaged (analyze's notes), or fewer samples from a file cut short (replay
    says nothing, but reads only whole samples); "error-line" for one error line; else what went
    wrong."""
    kind = outcome.kind
    if kind != "ok":
        return kind
    try:
        got = headline(command, outcome, out)
    except (ValueError, KeyError, OSError) as exc:
        return f"unreadable output ({exc.__class__.__name__})"
    if got == reference:
        return "ok"
    if command == "analyze" and got["damaged"]:
        return "ok"
    if command == "replay" and got["samples"] < reference["samples"]:
        return "ok"
    return "wrong output"


def flips(data: bytes, n: int, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    out = []
    for offset in rng.choice(len(data), size=n, replace=False):
        damaged = bytearray(data)
        damaged[offset] ^= int(rng.integers(1, 256))
        out.append((f"flip@{offset}", bytes(damaged)))
    return out


def truncations(data: bytes, n: int, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    cuts = np.sort(rng.choice(np.arange(1, len(data)), size=n, replace=False))
    return [(f"cut@{cut}", data[:cut]) for cut in cuts]


@dataclass
class Campaign:
    tries: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (command, kind) -> count
    failures: list[str] = field(default_factory=list)

    @property
    def clean(self) -> int:
        return sum(n for (_, kind), n in self.outcomes.items() if kind in ("ok", "error-line"))

    def summary(self) -> str:
        parts = ", ".join(f"{cmd} {kind}: {n}" for (cmd, kind), n in sorted(self.outcomes.items()))
        return f"{self.tries} runs, {self.clean} clean ({parts})"


def reference_outputs(trace: Path, work: Path) -> dict[str, object]:
    ref = {}
    for command in READERS:
        out = work / f"reference-{command}" / ("report.html" if command == "report" else "out")
        out.parent.mkdir(parents=True)
        outcome = run_calm(*reader_args(command, trace, out))
        assert outcome.success, (command, outcome.stderr)
        ref[command] = headline(command, outcome, out)
    return ref


def run(trace: Path, work: Path, *, n_flips: int, n_cuts: int, seed: int, workers: int = 2) -> Campaign:
    """Damages copies of `trace` and runs every reader on each; returns the counts."""
    reference = reference_outputs(trace, work)
    data = trace.read_bytes()
    rng = np.random.default_rng(seed)
    cases = flips(data, n_flips, rng) + truncations(data, n_cuts, rng)
    jobs = []
    for name, content in cases:
        folder = work / name
        folder.mkdir()
        damaged = folder / "damaged.h5"
        damaged.write_bytes(content)
        for command in READERS:
            out = folder / (f"{command}.html" if command == "report" else command)
            jobs.append((name, command, damaged, out))
    campaign = Campaign()

    def one(job):
        name, command, damaged, out = job
        return job, run_calm(*reader_args(command, damaged, out))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (name, command, damaged, out), outcome in pool.map(one, jobs):
            campaign.tries += 1
            kind = judge(command, outcome, out, reference[command])
            campaign.outcomes[(command, kind)] += 1
            if kind not in ("ok", "error-line"):
                campaign.failures.append(f"{name} {command}: {kind}: {outcome.stderr[-600:]}")
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    return campaign


if __name__ == "__main__":  # python -m tests.fault_campaign TRACE [FLIPS CUTS SEED]
    import tempfile

    trace = Path(sys.argv[1])
    flips_n, cuts_n, seed = (int(a) for a in (sys.argv[2:5] + ["50", "10", "0"][len(sys.argv) - 2:]))
    with tempfile.TemporaryDirectory(prefix="calm-fault-campaign-") as tmp:
        result = run(trace, Path(tmp), n_flips=flips_n, n_cuts=cuts_n, seed=seed)
    print(result.summary())
    for failure in result.failures:
        print(failure, file=sys.stderr)
    sys.exit(0 if not result.failures else 1)
