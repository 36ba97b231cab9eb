"""`calm demo`: the real workload, recorded, analysed, replayed and reported, end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest

from calm.collector.backends import choose_backend
from calm.trace.reader import Trace
from collector_helpers import calm, one_line_error
from test_progress_tty import assert_line_oriented

SLIDE_SCENARIOS = ["1GiB@1Gbit", "512MiB@512Mbit", "512MiB@256Mbit", "256MiB@256Mbit"]
ANALYSIS_PLOTS = ("top100", "top500", "cdf", "over_time", "top_over_time", "heatmap", "working_set",
                  "regions", "symbols")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = calm("demo", "--duration", "4", "-o", str(out), stdin=subprocess.DEVNULL, timeout=300)
    assert result.returncode == 0, result.stderr
    return out, result


def test_demo_writes_trace_analysis_replay_and_report(demo) -> None:
    out, _ = demo
    expected_backend = choose_backend("auto")[0].name
    with Trace(out / "trace.h5") as trace:
        assert trace.info.backend == expected_backend
        assert trace.info.status == "complete"
        assert 25 <= trace.n_samples <= 45  # 4 s at 0.1 s
        assert len(trace.processes) == 1 and trace.processes[0].cmdline[1:3] == ["-m", "calm.workloads.groundtruth"]
        workload_pid = trace.processes[0].pid
    assert not psutil.pid_exists(workload_pid) or psutil.Process(workload_pid).status() == psutil.STATUS_ZOMBIE

    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["service"]["dirtied_pages"] > 100
    for name in ANALYSIS_PLOTS:
        for ext in ("png", "svg"):
            assert (out / "analysis" / f"{name}.{ext}").stat().st_size > 1000, name
    results = json.loads((out / "replay" / "results.json").read_text())
    assert [s["name"] for s in results["scenarios"]] == SLIDE_SCENARIOS
    assert all(len(s["results"]) == 5 and s["sweep"] for s in results["scenarios"])
    for name in ("results.csv", "bandwidth.png", "cost-vs-bandwidth.png"):
        assert (out / "replay" / name).stat().st_size > 0

    html = (out / "report.html").read_text()
    assert html.count("<img src=\"data:image/png;base64,") == len(ANALYSIS_PLOTS) + 3
    assert "http://" not in html and "https://" not in html
    assert html.count("<tr class=\"best\">") >= len(SLIDE_SCENARIOS)
    assert "trace.h5" in html and expected_backend in html


def test_demo_says_what_it_does_and_where_everything_is(demo) -> None:
    out, result = demo
    assert_line_oriented(result.stderr)
    assert_line_oriented(result.stdout)
    err = result.stderr
    backend_cls, why = choose_backend("auto")
    assert f"calm record: using the {why}" in err  # which backend and why
    for stage in ("[1/4] recording the built-in service workload", "[2/4] analysing",
                  "[3/4] replaying", "[4/4] writing the HTML report"):
        assert f"calm demo: {stage}" in err
    stdout = result.stdout
    assert f"with the {backend_cls.name} backend" in stdout
    assert "1GiB    1Gbit      calm" in stdout  # the replay table
    for path in (out / "report.html", out / "trace.h5", f"{out / 'analysis'}/", f"{out / 'replay'}/"):
        assert f"  {path} " in stdout, stdout
    assert f"everything is in {out}/" in stdout


def test_demo_refuses_to_overwrite_without_force_and_quiet_is_silent(demo) -> None:
    out, _ = demo
    line = one_line_error(calm("demo", "--duration", "1", "-o", str(out)))
    assert "already holds trace.h5" in line and "--force" in line
    before = (out / "report.html").stat().st_mtime_ns
    forced = calm("demo", "--duration", "1.5", "-o", str(out), "--force", "--quiet", timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "" and forced.stderr == ""
    assert (out / "report.html").stat().st_mtime_ns > before
    with Trace(out / "trace.h5") as trace:
        assert trace.n_samples < 25  # the new, shorter recording


@pytest.mark.parametrize("args, message", [
    (["--duration", "0"], "--duration: duration '0' must be positive"),
    (["--duration", "-3"], "--duration: duration '-3' must be positive"),
    (["--duration", "1e999"], "--duration: duration '1e999' is out of range"),
])
def test_demo_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    assert message in one_line_error(calm("demo", "-o", str(tmp_path / "d"), *args), exit_code=2)
    assert not (tmp_path / "d").exists()


def test_demo_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert "is not a directory" in one_line_error(calm("demo", "-o", str(target)))
