"""`calm sweep` through the real command on real Dask clusters: a LocalCluster of 2 worker
processes, and a `dask scheduler` + `dask worker` started separately as a user with a cluster
runs them; every row is checked against a serial `run_replay` of the same cell."""

from __future__ import annotations

import csv
import os
import signal
import stat
import subprocess
import sys

import psutil
import pytest
from collector_helpers import calm, one_line_error
from replay_helpers import hot_set, write_trace
from sweep_helpers import assert_same_result, dask_cluster, isolated_env, serial_row, site_packages_without

from calm.replay.sweep_table import read_csv

pytestmark = pytest.mark.slow  # each test starts a Dask cluster (2-5 s) and replays tens of cells

COST_A = "mm1:rate=12,size=1MiB,sla=1s"
COST_B = "mm1:rate=6,size=512KiB,sla=500ms"


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """Three traces with different writing patterns (footprints of 2,000, 600 and 3,000 pages)."""
    d = tmp_path_factory.mktemp("sweep-traces")
    return [
        write_trace(d / "mixed.h5", lambda s: list(range(100)) + list(range(100 + s % 50, 2000, 50)), n_steps=100),
        write_trace(d / "hot.h5", hot_set(0, 600), n_steps=40, interval=0.05),
        write_trace(d / "scan.h5", lambda s: list(range((s * 150) % 3000, (s * 150) % 3000 + 150)), n_steps=60,
                    two_processes=True),
    ]


def _sweep_args(traces, out) -> list[str]:
    return ["sweep", *map(str, traces), "-s", "64MiB@256Mbit", "-s", "32MiB@1Gbit", "--cost", COST_A,
            "--cost", COST_B, "--qemu-max-bandwidth", "50Mbit,100Mbit", "--clark-max-rounds", "3",
            "--clark-max-rounds", "30", "-o", str(out)]


def _check_table(rows: list[dict], traces) -> None:
    # 3 traces x 2 scenarios x 2 costs x (calm, clark x2, xen, qemu x2, fixed)
    assert len(rows) == 3 * 2 * 2 * 7
    assert [r["trace"] for r in rows[:7]] == [str(traces[0])] * 7
    assert [r["policy"] for r in rows[:7]] == ["calm", "clark max-rounds=3", "clark max-rounds=30", "xen",
                                               "qemu max-bandwidth=50Mbit", "qemu max-bandwidth=100Mbit", "fixed"]
    assert {r["qemu_max_bandwidth_bps"] for r in rows if r["algorithm"] == "qemu"} == {50e6, 100e6}
    assert all(r["qemu_max_bandwidth_bps"] is None for r in rows if r["algorithm"] != "qemu")
    for row in rows:
        assert row["error"] == "", row
        assert_same_result(row, serial_row(row))


def test_local_cluster_gives_the_rows_of_serial_replays(traces, tmp_path):
    out = tmp_path / "out"
    result = calm(*_sweep_args(traces, out), "--workers", "2", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "84 cells (3 traces x 2 scenarios x 2 costs x 7 policies) on 2 Dask workers" in result.stderr
    rows = read_csv(out / "sweep.csv")
    _check_table(rows, traces)
    import pyarrow.parquet as pq

    assert pq.read_table(out / "sweep.parquet").to_pylist() == rows  # same table, typed
    for name in ("sweep.csv", "sweep.parquet", "sweep.json", "sweep-cost.png", "sweep-cost.svg",
                 "sweep-winners.png", "sweep-winners.svg"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
        assert (out / name).stat().st_size > 500, name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_separately_started_scheduler_and_workers(traces, tmp_path):
    """The same sweep against `dask scheduler` + `dask worker` processes, by address and by
    scheduler file, gives the same table as serial replays."""
    with dask_cluster(tmp_path, 2) as (address, sched_file):
        by_address = calm(*_sweep_args(traces, tmp_path / "a"), "--scheduler", address, "--no-plots", timeout=600)
        assert by_address.returncode == 0, by_address.stderr
        assert "Traceback" not in by_address.stderr, by_address.stderr
        assert f"on 2 Dask workers (2 threads) at {address}" in by_address.stderr
        by_file = calm(*_sweep_args(traces, tmp_path / "f"), "--scheduler-file", str(sched_file), "-q",
                       timeout=600)
        assert by_file.returncode == 0, by_file.stderr
    rows = read_csv(tmp_path / "a" / "sweep.csv")
    _check_table(rows, traces)
    strip = ("elapsed_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in read_csv(tmp_path / "f" / "sweep.csv")] == \
        [{k: v for k, v in r.items() if k not in strip} for r in rows]


def test_a_worker_without_calm_is_refused(traces, tmp_path):
    """A cluster whose worker cannot import calm (its Python has Dask but not calm): one line that
    says what to install, before any cell is sent."""
    env = isolated_env(site_packages_without(tmp_path, "calm"))
    with dask_cluster(tmp_path, 1, worker_python=[sys.executable, "-S"], worker_env=env) as (address, _):
        result = calm("sweep", str(traces[1]), "--scheduler", address, "-o", str(tmp_path / "out"), timeout=600)
    line = one_line_error(result, exit_code=1)
    assert "has no calm installed, this client calm" in line and "on every worker" in line
    assert not (tmp_path / "out").exists()


def test_a_failing_cell_is_an_error_row_and_the_others_finish(traces, tmp_path):
    """4MiB is smaller than mixed.h5's 2,000-page footprint: those cells fail, each with its reason;
    every other cell runs (a QEMU max-bandwidth of 500Mbit over a 256Mbit link is capped by the
    link, as in QEMU, not an error)."""
    out = tmp_path / "out"
    result = calm("sweep", str(traces[0]), str(traces[1]), "-s", "4MiB@1Gbit", "-s", "64MiB@256Mbit",
                  "-a", "calm,qemu", "--qemu-max-bandwidth", "100Mbit,500Mbit", "--workers", "2", "-o", str(out),
                  timeout=600)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"calm sweep: error: 3 of 12 cells failed; the error column of {out / 'sweep.csv'} says why"
    assert "Traceback" not in result.stderr, result.stderr
    rows = read_csv(out / "sweep.csv")
    failed = {(r["trace"].rsplit("/", 1)[1], r["scenario"], r["policy"]): r["error"] for r in rows if r["error"]}
    assert sorted(failed) == [("mixed.h5", "4MiB@1Gbit", "calm"),
                              ("mixed.h5", "4MiB@1Gbit", "qemu max-bandwidth=100Mbit"),
                              ("mixed.h5", "4MiB@1Gbit", "qemu max-bandwidth=500Mbit")]
    assert "smaller than the trace's dirtied footprint of 2000 pages" in failed["mixed.h5", "4MiB@1Gbit", "calm"]
    for row in rows:
        if not row["error"]:
            assert row["cost_s"] > 0
            assert_same_result(row, serial_row(row))
        else:
            assert row["cost_s"] is None
    # hot.h5 (600 pages) fits in 4MiB (1,024 pages): its cells there ran
    assert [r["error"] for r in rows if "hot" in r["trace"] and r["scenario"] == "4MiB@1Gbit"] == ["", "", ""]


def test_ctrl_c_stops_the_cluster_with_one_line(tmp_path):
    """SIGINT to the process group (what Ctrl-C at a terminal sends, workers included) while cells
    run: exit 130, one line, every process the sweep started gone, the finished rows kept."""
    trace = write_trace(tmp_path / "t.h5", lambda s: list(range(s % 7, 6000, 7)), n_steps=70)
    out = tmp_path / "out"
    # QEMU at 20 Mbit runs into the time limit: 10-20 s a cell, so SIGINT finds cells running
    args = [sys.executable, "-m", "calm", "sweep", str(trace), "-s", "1GiB@100Mbit", "-s", "512MiB@50Mbit",
            "-a", "qemu,xen,fixed", "--qemu-max-bandwidth", "20Mbit", "--workers", "2", "-o", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = []
        for line in proc.stderr:  # handshake: the sweep says it is mapping, i.e. cells are being submitted
            seen.append(line)
            if line.startswith("mapping trace 1/1"):
                break
        assert seen and seen[-1].startswith("mapping trace"), seen
        started = psutil.Process(proc.pid).children(recursive=True)
        assert len([p for p in started if "spawn_main" in " ".join(p.cmdline())]) == 2
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == [stderr.splitlines()[0]] and \
        stderr.startswith("calm sweep: interrupted after "), stderr
    _, alive = psutil.wait_procs(started, timeout=60)
    assert not alive, [p.cmdline() for p in alive]
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    not_run = [r for r in rows if r["error"] == "not run: the sweep was interrupted"]
    assert not_run and all(r["cost_s"] == "" for r in not_run)
    assert all(r["cost_s"] for r in rows if not r["error"])
    assert not (out / "sweep-cost.png").exists()  # no summary of a partial sweep
