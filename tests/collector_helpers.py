"""Helpers for tests that run the real collector against real processes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
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


def start_workload(tmp: Path, timeout: float = 120, **kwargs) -> tuple[subprocess.Popen, Path]:
    """Starts the ground-truth workload and waits until its memory is resident."""
    cmd, truth, ready = workload_command(tmp, **kwargs)
    proc = subprocess.Popen(cmd, cwd=REPO)
    wait_for_file(ready, proc, timeout)
    return proc, truth


def wait_until(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Polls `condition()` until it holds (a handshake on observable state, not a delay: it returns
    as soon as it holds); fails at once if `proc` exits first. The timeout only stops a hung test."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout} s")
        time.sleep(0.02)


def wait_for_file(path: Path, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Waits for a ready file to appear with some content."""
    wait_until(lambda: path.exists() and path.stat().st_size > 0, f"{path}", proc, timeout)


EXITED_AFTER = re.compile(r"exited (?:after sample (\d+)|before its first sample)")


def last_sample_said(line: str) -> int:
    """The last sample holding a process, from calm's note "pid N exited after sample K" (-1 for
    "exited before its first sample"); the trace's exit_sample is one more."""
    m = EXITED_AFTER.search(line)
    assert m, line
    return int(m[1]) if m[1] is not None else -1


PROGRESS_LINE = re.compile(r"^recording +([0-9.]+) s +samples (\d+) +processes (\d+)")


class Recording:
    """`calm record` running in the background, with the handshakes a test waits on instead of
    sleeping: its ready file (`--ready-file`: recording has started) and the lines it prints on
    stderr (notes such as "pid N exited (sample K)" and, when not on a terminal, a progress line
    "recording T s  samples N  processes P ..." after the first sample and every 5 s)."""

    def __init__(self, tmp: Path, *args: str, name: str = "rec") -> None:
        self.ready = tmp / f"{name}.ready"
        self.proc = subprocess.Popen([sys.executable, "-m", "calm", "record", "--ready-file", str(self.ready), *args],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.stdout = ""
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 120) -> None:
        wait_for_file(self.ready, self.proc, timeout)

    def wait_for_line(self, matches, timeout: float = 120) -> str:
        """The first stderr line for which `matches(line)` is true (a substring also works)."""
        test = (lambda line: matches in line) if isinstance(matches, str) else matches
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if test(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    raise AssertionError(f"calm record {'exited' if self._eof else 'timed out'} before the "
                                         f"expected line; stderr:\n" + "\n".join(self.lines))
                self._changed.wait(left)

    def wait_for_samples(self, n: int, timeout: float = 120) -> tuple[float, int, int]:
        """Waits for a progress line reporting at least n samples: (elapsed s, samples, processes)."""
        def enough(line: str) -> bool:
            m = PROGRESS_LINE.match(line)
            return m is not None and int(m[2]) >= n
        m = PROGRESS_LINE.match(self.wait_for_line(enough, timeout))
        return float(m[1]), int(m[2]), int(m[3])

    def samples_so_far(self) -> int:
        """The sample count of the latest progress line seen (0 before the first)."""
        with self._changed:
            counts = [int(m[2]) for line in self.lines if (m := PROGRESS_LINE.match(line))]
        return max(counts, default=0)

    def finish(self, sig: int | None = signal.SIGINT, timeout: float = 120) -> int:
        """Sends `sig` (None: lets calm end by itself), waits for the exit; returns the exit code."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.stdout = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(30)

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


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
                    samples: int = 50, timeout: float = 300, **workload) -> tuple[Path, Path, int]:
    """Starts the workload, records it by pid with the real `calm record` until calm reports at
    least `samples` samples (its progress line: a busy machine makes this slower, never shorter),
    then stops calm with SIGINT and the workload.

    Returns (trace path, truth path, workload pid). `workload` goes to `start_workload` (its
    `interval` is the workload's write interval, `record_interval` the collector's).
    """
    proc, truth = start_workload(tmp, timeout, **workload)
    name = workload.get("name", "w")
    out = tmp / f"{name}-trace.h5"
    try:
        with Recording(tmp, "--backend", backend, "--pid", str(proc.pid), "--interval", str(record_interval),
                       "-o", str(out), name=f"{name}-rec") as rec:
            rec.wait_ready(timeout)
            rec.wait_for_samples(samples, timeout)
            code = rec.finish(timeout=timeout)
            if code != 0:
                raise AssertionError(f"calm record failed ({code}):\n{rec.stderr}")
    finally:
        stop(proc)
    return out, truth, proc.pid


def record_comparable(tmp: Path, *, need: int, samples: int, attempts: int = 4, **kwargs) -> tuple[Path, Path, int]:
    """`record_workload` until at least `need` samples can be compared exactly with the truth.

    A sample whose window a write round straddles is ambiguous and left out of the comparison. On a
    busy machine (or under TCG) the workload's rounds and calm's reads stretch and more samples are
    ambiguous, so this records again, twice as long each time: slower, never a weaker check. The
    last recording is returned either way (the caller's assertions then say what was short)."""
    from calm.analyzer.accuracy import exact_comparison, load_truth
    from calm.trace.reader import Trace

    for attempt in range(attempts):
        where = tmp / f"attempt{attempt}"
        where.mkdir()
        out, truth_path, pid = record_workload(where, samples=samples, **kwargs)
        with Trace(out) as trace:
            if exact_comparison(trace, row_of(trace, pid), load_truth(truth_path)).compared >= need:
                break
        samples *= 2
    return out, truth_path, pid


def calm_popen(*args: str) -> subprocess.Popen:
    """Starts the real `calm` in the background (stdout and stderr piped)."""
    return subprocess.Popen([sys.executable, "-m", "calm", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_samples(out: Path, rec: subprocess.Popen, n: int, timeout: float = 60) -> int:
    """Until the trace being recorded holds n samples (the recorder flushes at least once a
    second: its own output is the handshake); returns how many it holds then."""
    from calm.core.errors import CalmError
    from calm.trace.reader import Trace

    deadline = time.monotonic() + timeout
    while True:
        if rec.poll() is not None:
            raise AssertionError(f"calm exited with {rec.returncode}: {rec.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{out} did not reach {n} samples in {timeout} s")
        if out.exists():
            try:
                with Trace(out) as trace:
                    if trace.n_samples >= n:
                        return trace.n_samples
            except (CalmError, RuntimeError, OSError):
                pass  # created, not flushed yet, or read in the middle of a flush
        time.sleep(0.05)


def row_of(trace, pid: int) -> int:
    """The row in trace.processes of the (first) process with this pid."""
    rows = [p.row for p in trace.processes if p.pid == pid]
    assert rows, f"pid {pid} not in trace: {[p.pid for p in trace.processes]}"
    return rows[0]


# Maps N anonymous pages and leaves them in four known states (quarters): data written, zeros
# written (resident, all zero), only read (the shared zero page), never touched (not resident).
# Writes "ADDRESS PAGES" to the ready file, then waits to be stopped.
QUARTERS_PROGRAM = r"""
import ctypes, mmap, os, sys, time
n, ready = int(sys.argv[1]), sys.argv[2]
buf = mmap.mmap(-1, n * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
q = n // 4
for i in range(q):
    buf[i * 4096] = 7
for i in range(q, 2 * q):
    buf[i * 4096] = 0
for i in range(2 * q, 3 * q):
    buf[i * 4096]
with open(ready + ".tmp", "w") as f:
    f.write(f"{addr} {n}")
os.rename(ready + ".tmp", ready)
time.sleep(3600)
"""


def start_quarters(tmp: Path, pages: int = 4096) -> tuple[subprocess.Popen, int]:
    """Starts QUARTERS_PROGRAM; returns (process, first page number of its region)."""
    ready = tmp / "quarters.ready"
    proc = subprocess.Popen([sys.executable, "-c", QUARTERS_PROGRAM, str(pages), str(ready)])
    wait_for_file(ready, proc)
    address, _ = ready.read_text().split()
    return proc, int(address) // 4096


def region_states(residency: dict, first_vpn: int, pages: int) -> list[int]:
    """The residency state of each page of [first_vpn, first_vpn + pages), from the runs."""
    import numpy as np

    out = []
    start, length, state = (residency[k].astype(np.int64) for k in ("start_vpn", "pages", "state"))
    for vpn in range(first_vpn, first_vpn + pages):
        run = int(np.searchsorted(start, vpn, side="right")) - 1
        assert run >= 0 and vpn < start[run] + length[run], f"page {vpn:#x} not covered by the runs"
        out.append(int(state[run]))
    return out
