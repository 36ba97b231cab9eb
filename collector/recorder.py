"""The recording loop behind `calm record`.

Why it is shaped like this:
- Everything that can be refused (backend, pids, permissions, output path) is checked before the
  trace file is created or a command is launched, so bad input costs nothing.
- Rounds run on a fixed-rate schedule (round k at start + k * interval, like `perf record -F`). A
  round reads every followed process once; the sample it produces covers the writes between the end
  of the previous round and the start of this one (`t_start`, `t_end`). Writes during a round land
  in that sample or the next one; an overrun (a round longer than the interval) is counted.
- The file is flushed at least once a second and closed cleanly on SIGINT/SIGTERM; a SIGKILL leaves
  everything up to the last flush readable (see calm.trace.writer).
- A process that exits ends its own stream; the recording goes on while any target is alive.
"""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil

from calm.core.version import __version__
from calm.core.errors import CalmError
from calm.collector.backends import HashBackend, SoftDirtyBackend, choose_backend
from calm.collector.procfs import PAGE_SIZE, ProcessGone, read_maps
from calm.trace.maps import MapsTable
from calm.core.progress import Progress
from calm.collector.targets import ProcessDetails, ProcessIdentity, TargetSet, check_pid, describe
from calm.trace.writer import TraceWriter, check_output_path

FLUSH_EVERY_SECONDS = 1.0
TERMINATE_GRACE_SECONDS = 5.0


@dataclass
class RecordOptions:
    output: Path
    pids: list[int] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    children: bool = False
    backend: str = "auto"
    interval: float = 0.1
    duration: float | None = None
    force: bool = False
    quiet: bool = False


@dataclass
class RecordResult:
    samples: int
    processes: int
    events: int
    seconds: float
    overruns: int
    end_reason: str
    backend: str
    command_status: int | None = None  # exit status of a launched command that ended by itself


@dataclass
class _Tracked:
    identity: ProcessIdentity
    row: int
    backend: SoftDirtyBackend | HashBackend
    maps: MapsTable


@dataclass
class _Pending:
    """A process opened and baselined, not yet in the trace."""

    details: ProcessDetails
    backend: SoftDirtyBackend | HashBackend
    maps: MapsTable


class _StopSignals:
    """SIGINT/SIGTERM set a flag and wake the sleeping loop through a self-pipe."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wakeup = signal.set_wakeup_fd(self._write_fd)
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0 and self.received is None:
            ready, _, _ = select.select([self._read_fd], [], [], delay)
            if ready:
                try:
                    os.read(self._read_fd, 64)
                except BlockingIOError:
                    pass

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        os.close(self._read_fd)
        os.close(self._write_fd)


def _alive_without_memory(proc: psutil.Process) -> bool:
    """A live process whose memory cannot be opened because it has none (kernel threads)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and not read_maps(proc.pid).start.size
    except (psutil.Error, ProcessGone, CalmError):
        return False


def _validate(options: RecordOptions) -> None:
    if not (options.interval > 0):
        raise CalmError(f"--interval must be > 0 seconds, got {options.interval}")
    if options.duration is not None and not (options.duration > 0):
        raise CalmError(f"--duration must be > 0 seconds, got {options.duration}")
    if options.pids and options.command:
        raise CalmError("give either --pid or a command after --, not both")
    if not options.pids and not options.command:
        raise CalmError("nothing to record: give --pid PID or a command after --")
    check_output_path(options.output, force=options.force)


class Recorder:
    """One recording: targets, backend, trace writer and the sampling loop."""

    def __init__(self, options: RecordOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.backend, self.why = choose_backend(options.backend)
        self.tracked: dict[ProcessIdentity, _Tracked] = {}
        self.popen: subprocess.Popen | None = None
        self.writer: TraceWriter | None = None
        self.overruns = 0
        self.events = 0
        self.n_processes = 0
        self._command_status: int | None = None

    # -- targets -------------------------------------------------------------------------------
    def _roots(self) -> list[psutil.Process]:
        if self.options.pids:
            return [check_pid(pid) for pid in self.options.pids]
        try:
            self.popen = subprocess.Popen(self.options.command)
        except FileNotFoundError:
            raise CalmError(f"command not found: {self.options.command[0]}") from None
        except PermissionError:
            raise CalmError(f"command not executable: {self.options.command[0]}") from None
        return [psutil.Process(self.popen.pid)]

    def _prepare(self, proc: psutil.Process, *, required: bool) -> _Pending | None:
        """Opens a process and takes its baseline; None (with a note) for an optional one that
        cannot be read, CalmError for a required one."""
        try:
            details = describe(proc)
            backend = self.backend(proc.pid)
            maps = backend.start()
            if len(maps) == 0:
                raise ProcessGone(proc.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, ProcessGone):
            if _alive_without_memory(proc):
                if required:
                    raise CalmError(f"pid {proc.pid} has no user memory to record (a kernel thread?)") from None
                return None
            if required:
                who = f"command {self.options.command[0]}" if self.popen else f"pid {proc.pid}"
                raise CalmError(f"{who} exited before recording started") from None
            return None
        except (CalmError, psutil.AccessDenied) as exc:
            if required:
                raise CalmError(str(exc) or f"no permission to read pid {proc.pid}") from None
            self.progress.note(f"calm record: skipping pid {proc.pid}: {exc}")
            return None
        return _Pending(details, backend, maps)

    def _register(self, pending: _Pending) -> None:
        """Starts following a prepared process; its first sample is the next round's."""
        assert self.writer is not None
        details = pending.details
        row = self.writer.open_process(
            pid=details.identity.pid, ppid=details.ppid, start_time_unix=details.identity.create_time,
            name=details.name, cmdline=details.cmdline, exe=details.exe,
        )
        self.writer.add_maps(row, self.writer.n_samples, pending.maps)
        self.tracked[details.identity] = _Tracked(details.identity, row, pending.backend, pending.maps)
        self.n_processes += 1

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> RecordResult:
        options = self.options
        stop = _StopSignals()
        status, end_reason = "complete", ""
        t0 = time.monotonic()
        try:
            roots = self._roots()
            targets = TargetSet(roots, options.children)
            # Every initial target is opened before the file exists: a refusal leaves nothing.
            prepared = [self._prepare(proc, required=proc in roots)
                        for proc in (targets.current() or roots)]
            self.progress.note(f"calm record: using the {self.why}")
            self.writer = TraceWriter(options.output, force=options.force, attrs=self._attrs(t0))
            for pending in prepared:
                if pending is not None:
                    self._register(pending)
            end_reason = self._loop(targets, stop, t0)
        except CalmError:
            status, end_reason = "failed", "error"
            raise
        except BaseException as exc:  # a bug: keep what was recorded, then show it
            status, end_reason = "failed", f"internal error: {exc!r}"
            raise
        finally:
            stop.restore()
            if self.writer is not None:
                self.writer.close(status=status, end_reason=end_reason)
            self._stop_command()
        return RecordResult(self.writer.n_samples, self.n_processes, self.events,
                            time.monotonic() - t0, self.overruns, end_reason, self.backend.name,
                            self._command_status)

    def _loop(self, targets: TargetSet, stop: _StopSignals, t0: float) -> str:
        writer = self.writer
        assert writer is not None
        interval, duration = self.options.interval, self.options.duration
        previous_end = time.monotonic()
        next_round = t0 + interval
        dirty_recent: list[tuple[float, int]] = []
        while True:
            deadline = next_round if duration is None else min(next_round, t0 + duration)
            stop.sleep_until(deadline)
            if stop.received is not None:
                return f"stopped by {signal.Signals(stop.received).name}"
            round_begin = time.monotonic()
            sample = writer.n_samples
            per_process = {}
            for identity, tracked in list(self.tracked.items()):
                try:
                    result = tracked.backend.sample()
                    if len(result.maps) == 0:
                        raise ProcessGone(identity.pid)
                except ProcessGone:
                    self._close(identity, sample)
                    continue
                per_process[tracked.row] = (result.dirty_vpns, result.n_resident)
                self.events += result.dirty_vpns.size
                if not result.maps.same_as(tracked.maps):
                    writer.add_maps(tracked.row, sample, result.maps)
                    tracked.maps = result.maps
            writer.add_sample(previous_end - t0, round_begin - t0, per_process)
            self._follow(targets, sample + 1)
            previous_end = time.monotonic()
            if previous_end - writer.last_flush >= FLUSH_EVERY_SECONDS or interval >= FLUSH_EVERY_SECONDS:
                writer.flush()
            n_dirty = sum(v.size for v, _ in per_process.values())
            dirty_recent = [(t, n) for t, n in dirty_recent if previous_end - t < 5.0]
            dirty_recent.append((previous_end, n_dirty))
            self._report(previous_end - t0, writer.n_samples, dirty_recent)
            if duration is not None and previous_end - t0 >= duration:
                return f"duration of {duration:g} s reached"
            if self.popen is not None and self.popen.poll() is not None:
                return f"command exited with status {self.popen.returncode}"
            if not self.tracked:
                return "all target processes exited"
            next_round += interval
            if next_round < previous_end:
                self.overruns += 1
                next_round = previous_end

    def _follow(self, targets: TargetSet, next_sample: int) -> None:
        """Closes processes that are gone and attaches new children."""
        live = {}
        for proc in targets.current():
            try:
                live[ProcessIdentity(proc.pid, proc.create_time())] = proc
            except psutil.Error:
                continue
        for identity in [i for i in self.tracked if i not in live]:
            self._close(identity, next_sample)
        for identity, proc in live.items():
            if identity not in self.tracked:
                pending = self._prepare(proc, required=False)
                if pending is not None:
                    self._register(pending)

    def _close(self, identity: ProcessIdentity, sample: int) -> None:
        tracked = self.tracked.pop(identity)
        assert self.writer is not None
        self.writer.close_process(tracked.row, exit_sample=sample)
        self.progress.note(f"calm record: pid {identity.pid} exited (sample {sample})")

    def _report(self, elapsed: float, samples: int, recent: list[tuple[float, int]]) -> None:
        span = recent[-1][0] - recent[0][0] if len(recent) > 1 else 0.0
        rate = sum(n for _, n in recent[1:]) / span if span > 0 else 0.0
        self.progress.update(
            f"recording {elapsed:7.1f} s  samples {samples}  processes {len(self.tracked)}  "
            f"dirty {rate:,.0f} pages/s ({rate * PAGE_SIZE / 1e6:,.1f} MB/s)"
        )

    def _stop_command(self) -> None:
        """A command calm launched is stopped when the recording ends before it does; one that
        ended by itself gives calm its exit status (as a shell reports it: 128 + N for signal N)."""
        if self.popen is None:
            return
        if self.popen.poll() is not None:
            code = self.popen.returncode
            self._command_status = code if code >= 0 else 128 - code
            return
        self.popen.terminate()
        try:
            self.popen.wait(TERMINATE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def _attrs(self, t0: float) -> dict[str, object]:
        now = time.time()
        return {
            "page_size": PAGE_SIZE,
            "backend": self.backend.name,
            "backend_method": self.backend.method,
            "interval": float(self.options.interval),
            "kernel_release": platform.release(),
            "hostname": socket.gethostname(),
            "start_time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
            "start_time_unix": now,
            "start_monotonic": t0,
            "tool_version": __version__,
            "command": json.loads(json.dumps(self.options.command)),
        }


def record(options: RecordOptions) -> RecordResult:
    """Records per `options`; raises CalmError for anything the user can fix."""
    _validate(options)
    with Progress(quiet=options.quiet) as progress:
        return Recorder(options, progress).run()
