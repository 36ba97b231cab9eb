"""scripts/bench_corpus.py end to end on a tiny synthetic corpus: the corpus is written with the real
TraceWriter, replayed through calm sweep's run_cell with every registered policy and two costs, and
the table and CSV hold every policy for every cell and an oracle no fixed-rate policy beats (the
oracle takes the rate `fixed` planned, so a fixed policy below it means the two simulate
differently). About 20 s."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from calm.replay.policies import POLICIES

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "bench_corpus.py"
# Apache's curve as BENCHMARKS.md ("Measured cost curve") reports it: a real curve's shape, as input
CURVE = "bandwidth,probability\n6Mbit,0.969\n8Mbit,0.969\n10Mbit,0.385\n11Mbit,0.208\n12Mbit,0.208\n14Mbit,0\n32Mbit,0\n"
TRACES = ("bursts", "gc-sweeps")  # one of each half
SCENARIO = "256MiB@256Mbit"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    curve = folder / "curve.csv"
    curve.write_text(CURVE)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(folder / "c"), "--synthetic-only", "--small", "--only",
                           ",".join(TRACES), "-s", SCENARIO, "--cost-csv", str(curve), "--oracle-points", "4",
                           "--workers", "1"], capture_output=True, text=True, timeout=300)
    return proc, folder / "c"


def test_every_policy_and_the_oracle_in_every_cell(run) -> None:
    proc, folder = run
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(folder / "results" / "corpus.csv")))
    cells: dict[tuple, dict[str, float]] = {}
    for r in rows:
        assert not r["error"], r
        cells.setdefault((r["trace"], r["scenario"], r["cost"]), {})[r["algorithm"]] = float(r["cost_s"])
    assert {c[0] for c in cells} == set(TRACES) and {c[1] for c in cells} == {SCENARIO}
    assert len({c[2] for c in cells}) == 2  # the M/M/1 default and the curve
    for key, costs in cells.items():
        assert set(costs) == set(POLICIES) | {"oracle"}, key
        assert costs["oracle"] <= costs["fixed"] * (1 + 1e-9), (key, costs)


def test_markdown_table_has_a_cost_for_every_policy(run) -> None:
    proc, _ = run
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| trace | half | scenario"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[4:4 + len(POLICIES)] == list(POLICIES) and columns[4 + len(POLICIES):7 + len(POLICIES)] == [
        "oracle", "won", "calm/oracle"]
    body = [line for line in lines[lines.index(header) + 2:] if line.startswith("| ")]
    assert len(body) == len(TRACES) * 2
    for line in body:
        values = [c.strip().strip("*") for c in line.strip("|").split("|")][4:5 + len(POLICIES)]
        assert all(float(v) >= 0 for v in values), line
    assert "- test half: 2 cells" in proc.stdout and "- train half: 2 cells" in proc.stdout
    assert "No trace of this corpus chose a parameter" in proc.stdout
