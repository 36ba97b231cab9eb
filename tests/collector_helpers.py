"""Helpers for tests that run the real collector against real processes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def calm(*args: str, timeout: float = 120, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Runs the real `calm` command (as `python -m calm`, so no PATH install is needed)."""
    proc = subprocess.run([sys.executable, "-m", "calm", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=kwargs.pop("cwd", None), **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"calm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def workload_command(tmp: Path, *, pages: int = 1024, interval: float = 0.1,
                     profile: str = "uniform:0.1", seed: int = 1, duration: float = 0.0,
                     name: str = "w") -> tuple[list[str], Path, Path]:
    truth = tmp / f"{name}-truth.npz"
    ready = tmp / f"{name}.ready"
    cmd = [sys.executable, "-m", "calm.workloads.groundtruth", "--pages", str(pages), "--interval",
           str(interval), "--profile", profile, "--seed", str(seed), "--truth", str(truth),
           "--ready-file", str(ready)]
    if duration:
        cmd += ["--duration", str(duration)]
    return cmd, truth, ready


def start_workload(tmp: Path, **kwargs) -> tuple[subprocess.Popen, Path]:
    """Starts the ground-truth workload and waits until its memory is resident."""
    cmd, truth, ready = workload_command(tmp, **kwargs)
    proc = subprocess.Popen(cmd, cwd=REPO)
    wait_for_file(ready, proc)
    return proc, truth


def wait_for_file(path: Path, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or path.stat().st_size == 0:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.02)


def stop(proc: subprocess.Popen, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.terminate()
    return proc.wait(timeout)


ERROR_LINE = re.compile(r"^calm( [a-z]+)?: error: ")


def one_line_error(result: subprocess.CompletedProcess, exit_code: int | None = None) -> str:
    """The stderr of a failed command, asserting it is exactly one `calm COMMAND: error:` line
    (and, when given, the exit code: 2 for usage errors, 1 for bad input)."""
    assert result.returncode != 0, f"expected failure, got 0; stderr: {result.stderr}"
    if exit_code is not None:
        assert result.returncode == exit_code, f"exit {result.returncode}, expected {exit_code}: {result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    return errors[0]




def record_workload(tmp: Path, *, backend: str = "hash", record_interval: float = 0.1,
                    duration: float = 5, timeout: float = 120, **workload) -> tuple[Path, Path, int]:
    """Starts the workload, records it by pid with the real `calm record`, stops it.

    Returns (trace path, truth path, workload pid). `workload` goes to `start_workload` (its
    `interval` is the workload's write interval, `record_interval` the collector's).
    """
    proc, truth = start_workload(tmp, **workload)
    out = tmp / f"{workload.get('name', 'w')}-trace.h5"
    try:
        calm("record", "--backend", backend, "--pid", str(proc.pid), "--interval",
             str(record_interval), "--duration", str(duration), "-q", "-o", str(out), check=True, timeout=timeout)
    finally:
        stop(proc)
    return out, truth, proc.pid


def row_of(trace, pid: int) -> int:
    """The row in trace.processes of the (first) process with this pid."""
    rows = [p.row for p in trace.processes if p.pid == pid]
    assert rows, f"pid {pid} not in trace: {[p.pid for p in trace.processes]}"
    return rows[0]
