"""Helpers for the `calm sweep` tests: serial reference rows, a real Dask cluster started as a user
would start one, and Python environments from which a package is really absent."""

from __future__ import annotations

import json
import math
import os
import site
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from collector_helpers import REPO

from calm.replay.runner import PolicyOptions, run_replay
from calm.replay.scenario import parse_scenario

# What a cell computes (compared numerically with serial replays).
RESULT_FIELDS = ("cost_s", "total_time_s", "downtime_s", "precopy_time_s", "pages_sent", "rounds", "forced",
                 "stop_reason")
OPTION_FIELDS = ("clark_min_bps", "clark_max_bps", "clark_increment_bps", "clark_max_rounds",
                 "qemu_max_bandwidth_bps", "qemu_downtime_limit_s")


def serial_row(row: dict, **replay_kwargs) -> dict:
    """What `run_replay` alone gives for the cell that `row` (a sweep table row) names."""
    options = PolicyOptions(**{k: row[k] for k in OPTION_FIELDS if row[k] is not None})
    report = run_replay(row["trace"], [parse_scenario(row["scenario"])], [row["algorithm"]], row["cost"],
                        options=options, **replay_kwargs)
    return report.table()[0]


def assert_same_result(row: dict, reference: dict) -> None:
    for key in RESULT_FIELDS:
        got, want = row[key], reference[key]
        if isinstance(want, float):
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0), (key, got, want, row["policy"])
        else:
            assert got == want, (key, got, want, row["policy"])


def _wait_for_file(path: Path, proc: subprocess.Popen, what: str, limit: float = 120.0) -> None:
    """The scheduler writes its file once it listens: that file is the handshake. `limit` only
    bounds a failure (a scheduler that died or never starts), it is not a wait for readiness."""
    deadline = time.monotonic() + limit
    while not (path.exists() and path.stat().st_size and _json_ok(path)):
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} wrote no {path.name} in {limit} s")
        time.sleep(0.05)


def _json_ok(path: Path) -> bool:
    try:
        return "address" in json.loads(path.read_text())
    except ValueError:
        return False


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def dask_cluster(tmp: Path, n_workers: int, *, worker_python: list[str] | None = None,
                 worker_env: dict | None = None):
    """`dask scheduler` and `dask worker` as separate processes on 127.0.0.1 (OS-chosen ports), as a
    user with a cluster runs them; yields (scheduler address, scheduler file). Workers are waited
    for with Dask's own handshake (`Client.wait_for_workers`)."""
    from distributed import Client

    sched_file = tmp / "scheduler.json"
    logs = tmp / "dask-logs"
    logs.mkdir(exist_ok=True)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)],
            stdout=subprocess.DEVNULL, stderr=(logs / "scheduler.log").open("w"), cwd=tmp))
        _wait_for_file(sched_file, procs[0], "dask scheduler")
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen(
            [*(worker_python or [sys.executable]), "-m", "dask", "worker", address, "--host", "127.0.0.1",
             "--nworkers", str(n_workers), "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=(logs / "worker.log").open("w"), cwd=tmp,
            env={**os.environ, **(worker_env or {})}))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=300)
        yield address, sched_file
    finally:
        _stop(procs)


def calm_tree(tmp: Path) -> Path:
    """A directory that makes the repository's calm importable on its own (the installed layout:
    calm.replay is the folder replay/, ...), for interpreters run with -S (no site-packages)."""
    root = tmp / "calm-tree"
    pkg = root / "calm"
    pkg.mkdir(parents=True)
    for entry in (REPO / "calm").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for sub in ("collector", "analyzer", "replay"):
        (pkg / sub).symlink_to(REPO / sub)
    return root


def site_packages_without(tmp: Path, *hidden: str) -> Path:
    """This interpreter's site-packages as a directory of links, less the distributions whose
    import names start with one of `hidden` (so they are really not importable from it)."""
    root = tmp / f"site-without-{'-'.join(hidden)}"
    root.mkdir()
    dirs = [Path(p) for p in site.getsitepackages()] + [Path(site.getusersitepackages())]
    for folder in dirs:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.lower().startswith(tuple(h.lower() for h in hidden)) or (root / entry.name).exists():
                continue
            if entry.suffix == ".pth" or entry.name.startswith("__editable__"):
                continue  # calm comes from calm_tree; -S processes no .pth anyway
            (root / entry.name).symlink_to(entry)
    return root


def isolated_env(*paths: Path) -> dict:
    """Environment for `python -S`: only `paths` (and the standard library) importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    return env
