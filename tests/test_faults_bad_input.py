"""Bad numbers and hostile files (issue 12): one line on stderr and exit 2 (a usage error) or 1 (bad
input), never a traceback, a hang or an output folder left behind; Ctrl-C is one line and 130."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from tests.collector_helpers import REPO, one_line_error
from tests.fault_helpers import ONE_LINE, run_calm
from tests.replay_helpers import hot_set, write_trace

# (arguments, exit code): the list, then every numeric option pushed to its extremes.
BAD_NUMBERS = [
    (["record", "--interval", "inf", "--", "true"], 2),
    (["record", "--interval", "1e999", "--", "true"], 2),
    (["record", "--duration", "inf", "--", "true"], 2),
    (["record", "--duration", "nan", "--", "true"], 2),
    (["record", "--duration", "-1s", "--", "true"], 2),
    (["record", "--pid", "99999999999999999999"], 1),
    (["record", "--pid", "0"], 2),
    (["replay", "--uniform", "0.01", "-s", "1e999GiB@1Gbit"], 2),
    (["replay", "--uniform", "0.01", "-s", "1GiB@1e999Gbit"], 2),
    (["replay", "--uniform", "0.01", "--max-time", "1e999s"], 2),
    (["replay", "--uniform", "0.01", "-s", "1e30B@1Gbit"], 2),
    (["replay", "--uniform", "0.01", "-s", "1B@1Gbit"], 1),
    (["replay", "--uniform", "1e-320", "-s", "1GiB@1Gbit"], 2),
    (["replay", "--uniform", "nan"], 2),
    (["replay", "--uniform", "1"], 2),
    (["replay", "--uniform", "0.01", "--interval", "1e-300"], 2),
    (["replay", "--uniform", "0.01", "--sweep", "99999999999"], 2),
    (["replay", "--uniform", "0.01", "--sweep", "-1"], 2),
    (["replay", "--uniform", "0.01", "--clark-min", "1e999bit"], 2),
    (["replay", "--uniform", "0.01", "--qemu-downtime-limit", "1e999s"], 2),
    (["replay", "--uniform", "0.01", "--cost", "mm1:rate=0,size=1MiB,sla=1s"], 1),
    (["replay", "--uniform", "0.01", "--cost", "mm1:rate=10,size=1MiB,sla=1e999s"], 1),
    (["replay", "--uniform", "0.01", "--skip", "1e999s"], 2),
    (["model", "--pages", "99999999999999999999"], 2),
    (["model", "--pages", "0"], 2),
    (["model", "--ram", "1e999GiB"], 2),
    (["model", "--bandwidth-pages", "1e-320"], 2),
    (["model", "--bandwidth", "1e999Gbit"], 2),
    (["model", "--points", "99999999999"], 2),
    (["model", "--page-size", "0"], 2),
    (["model", "--p", "2"], 2),
    (["load", "http://127.0.0.1:9/", "--rate", "1e999", "--count", "1"], 2),
    (["load", "http://127.0.0.1:9/", "--rate", "1e-300", "--count", "1"], 2),
    (["load", "http://127.0.0.1:9/", "--rate", "10", "--duration", "1e999"], 2),
]


@pytest.mark.parametrize("args, code", BAD_NUMBERS, ids=[" ".join(a) for a, _ in BAD_NUMBERS])
def test_bad_numbers_are_one_line(tmp_path, args, code):
    if args[0] == "record":
        args = args[:1] + ["-o", str(tmp_path / "t.h5")] + args[1:]
    elif args[0] in ("replay", "model"):
        args = args + ["-o", str(tmp_path / "out")]
    outcome = run_calm(*args, cwd=tmp_path)
    assert outcome.returncode is not None, "hung"
    one_line_error(subprocess.CompletedProcess(args, outcome.returncode, "", outcome.stderr), exit_code=code)
    assert list(tmp_path.iterdir()) == [], "a refused command left files"


def test_binary_cost_table_is_one_line(tmp_path):
    table = tmp_path / "cost.csv"
    table.write_bytes(bytes(range(256)) * 4)
    outcome = run_calm("replay", "--uniform", "0.01", "--cost", f"csv:{table}", "-o", str(tmp_path / "out"))
    line = one_line_error(subprocess.CompletedProcess([], outcome.returncode, "", outcome.stderr), exit_code=1)
    assert str(table) in line and "text" in line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def zero_page_size(tmp_path) -> Path:
    path = write_trace(tmp_path / "z.h5", hot_set(0, 8), n_steps=20)
    with h5py.File(path, "a") as f:
        f.attrs["page_size"] = 0
    return path


@pytest.mark.parametrize("command", ["analyze", "replay", "report"])
def test_a_trace_whose_page_size_is_zero(tmp_path, zero_page_size, command):
    out = tmp_path / ("out.html" if command == "report" else "out")
    outcome = run_calm(command, str(zero_page_size), "-o", str(out))
    line = one_line_error(subprocess.CompletedProcess([], outcome.returncode, "", outcome.stderr), exit_code=1)
    assert "page size" in line
    assert not out.exists()


def test_missing_trace_leaves_no_folder(tmp_path):
    for command in ("analyze", "replay"):
        one_line_error(run_calm_completed(command, "missing.h5", cwd=tmp_path), exit_code=1)
    one_line_error(run_calm_completed("replay", "--uniform", "0.01", "-s", "1B@1Gbit", cwd=tmp_path), exit_code=1)
    assert list(tmp_path.iterdir()) == []


def run_calm_completed(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    outcome = run_calm(*args, cwd=cwd)
    return subprocess.CompletedProcess(list(args), outcome.returncode, outcome.stdout, outcome.stderr)


def test_ctrl_c_in_a_long_replay_is_one_line(tmp_path):
    """A replay of 1 TiB runs for minutes: it shows progress, and Ctrl-C ends it with one line and
    exit 130, writing nothing."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "calm", "replay", "--uniform", "0.01", "-s", "1TiB@1Gbit",
                             "-o", str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()  # the first progress line: the replay is under way
        assert first.startswith("replaying 1TiB@1Gbit"), first
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)  # a child that never sees the signal fails, not hangs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in rest.splitlines() if line.strip() and not line.startswith("replaying")]
    assert proc.returncode == 130 and len(lines) == 1 and ONE_LINE.match(lines[0]), (proc.returncode, rest)
    assert not out.exists()
