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
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
import psutil

from calm.core.version import __version__
from calm.core.errors import CalmError
from calm.collector.backends import HashBackend, SoftDirtyBackend, choose_backend
from calm.collector.footprint import CENSUS_SECONDS, CENSUS_SHARE, pss_pages
from calm.collector.procfs import PAGE_SIZE, ProcessGone
from calm.collector.shared_hash import SharedHashes
from calm.trace.maps import MapsTable
from calm.core.progress import Progress
from calm.collector.recording import HASH_BLIND_SPOT, RecordOptions, RecordResult, StopSignals
from calm.collector.targets import ProcessDetails, ProcessIdentity, TargetSet, check_pid, describe, why_no_memory
from calm.core.paths import check_output_path
from calm.core import ready
from calm.trace import format as tf

if TYPE_CHECKING:
    from calm.trace.writer import TraceWriter

FLUSH_EVERY_SECONDS = 1.0
TERMINATE_GRACE_SECONDS = 5.0


@dataclass
class _Tracked:
    identity: ProcessIdentity
    row: int
    backend: SoftDirtyBackend | HashBackend
    maps: MapsTable
    first_sample: int  # the first sample that reads it
    pss: int = 0  # proportional resident pages at the last census


@dataclass
class _Pending:
    """A process opened and baselined, not yet in the trace."""

    details: ProcessDetails
    backend: SoftDirtyBackend | HashBackend
    maps: MapsTable


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
    if options.ready_file is not None:
        ready.check_ready_file(options.ready_file)
        if options.ready_file.resolve() == options.output.resolve():
            raise CalmError("the ready file and the output trace must be different files")


class Recorder:
    """One recording: targets, backend, trace writer and the sampling loop."""

    def __init__(self, options: RecordOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.backend, self.why = choose_backend(options.backend)
        self.backend = replace(self.backend, regions=tuple(options.regions))
        # the hash backend reads each shared page once per round for all processes
        self.shared = SharedHashes() if self.backend.name == "hash" else None
        if self.shared is not None:  # load numba and its compiled loop before the clock starts
            from calm.collector.page_reader import hash_implementation

            hash_implementation()
        self.tracked: dict[ProcessIdentity, _Tracked] = {}
        self.popen: subprocess.Popen | None = None
        self.writer: TraceWriter | None = None
        self.overruns = 0
        self.events = 0
        self.n_processes = 0
        self._command_status: int | None = None
        self._times: tuple[float, float] | None = None  # (t_start of the first sample, t_end of the last)
        self._last_census = -float("inf")
        self._census_every = CENSUS_SECONDS
        self._periods: list[float] = []
        self._cpu: list[float] = []

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
            backend = self.backend(proc.pid, self.shared)
            maps = backend.start()
            if len(maps) == 0:
                raise ProcessGone(proc.pid)
            # a --pid target must already hold a matching mapping (a typo is caught at once); a
            # launched command may map its region later
            if required and self.popen is None and self.options.regions and not len(backend.maps.read()[1]):
                wanted = " or ".join(repr(r) for r in self.options.regions)
                raise CalmError(f"pid {proc.pid} has no mapping matching --region {wanted}"
                                f"{' that is writable' if self.backend.name == 'hash' else ''} "
                                "(see /proc/PID/maps for the paths)")
        except (psutil.NoSuchProcess, psutil.ZombieProcess, ProcessGone):
            if required:
                who = f"command {self.options.command[0]}" if self.popen else f"pid {proc.pid}"
                raise CalmError(f"{who} {why_no_memory(proc.pid)}") from None
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
            name=details.name, cmdline=details.cmdline, exe=details.exe, title=details.title,
        )
        self.writer.add_maps(row, self.writer.n_samples, pending.maps)
        found = getattr(pending.backend, "start_residency", None)
        if found is not None:  # which pages were resident or zero when this process's recording began
            self.writer.add_residency(row, self.writer.n_samples, found.start_vpn, found.pages, found.state)
        try:
            pss = pss_pages(details.identity.pid)
        except ProcessGone:
            pss = 0  # gone already: the next round closes it
        self.tracked[details.identity] = _Tracked(details.identity, row, pending.backend, pending.maps,
                                                  self.writer.n_samples, pss)
        self.n_processes += 1

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> RecordResult:
        options = self.options
        stop = StopSignals()
        status, end_reason = "complete", ""
        t0 = time.monotonic()
        try:
            if options.ready_file is not None:
                ready.remove_stale(options.ready_file)
            if options.nice:
                os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + options.nice))
            roots = self._roots()
            targets = TargetSet(roots, options.children)
            # Every initial target is opened before the file exists: a refusal leaves nothing.
            prepared = [self._prepare(proc, required=proc in roots)
                        for proc in (targets.current() or roots)]
            baseline_end = time.monotonic()  # sample 0 holds the writes made from here on
            self.progress.note(f"calm record: using the {self.why}")
            # h5py loads only now, inside the first interval: the first sample is not delayed by it.
            from calm.trace.writer import TraceWriter

            self.writer = TraceWriter(options.output, force=options.force, attrs=self._attrs(t0))
            for pending in prepared:
                if pending is not None:
                    self._register(pending)
            if options.ready_file is not None:  # every write from now on lands in the trace
                ready.announce(options.ready_file)
            end_reason = self._loop(targets, stop, t0, baseline_end)
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
        first, last = self._times or (0.0, 0.0)
        periods = np.diff(self._periods) if len(self._periods) > 1 else np.zeros(1)
        return RecordResult(self.writer.n_samples, self.n_processes, self.events,
                            time.monotonic() - t0, self.overruns, end_reason, self.backend.name,
                            self._command_status, span=last - first, baseline=first,
                            interval=options.interval, period_mean=float(np.mean(periods)),
                            period_p95=float(np.percentile(periods, 95)),
                            cpu_per_round=float(np.mean(self._cpu)) if self._cpu else 0.0)

    def _loop(self, targets: TargetSet, stop: StopSignals, t0: float, baseline_end: float) -> str:
        from calm.trace.writer import RoundCost  # with the writer: h5py loads after start-up

        writer = self.writer
        assert writer is not None
        interval, duration = self.options.interval, self.options.duration
        previous_end = baseline_end
        next_round = t0 + interval
        dirty_recent: list[tuple[float, int]] = []
        while True:
            deadline = next_round if duration is None else min(next_round, t0 + duration)
            stop.sleep_until(deadline)
            if stop.received is not None:
                return f"stopped by {signal.Signals(stop.received).name}"
            round_begin = time.monotonic()
            cpu_begin = time.process_time()
            sample = writer.n_samples
            per_process, pages_read = self._read_round(sample)
            read_s = time.monotonic() - round_begin
            writer.add_sample(previous_end - t0, round_begin - t0, per_process,
                              pss={t.row: t.pss for t in self.tracked.values()},
                              cost=RoundCost(read_s, 0.0, pages_read))
            self._times = ((self._times or (previous_end - t0,))[0], round_begin - t0)
            self._follow(targets, sample + 1)
            previous_end = time.monotonic()
            cpu = time.process_time() - cpu_begin
            writer.set_round_cpu(cpu)  # the whole round: reads, bookkeeping, attaching new children
            self._periods.append(round_begin)
            self._cpu.append(cpu)
            if previous_end - writer.last_flush >= FLUSH_EVERY_SECONDS or interval >= FLUSH_EVERY_SECONDS:
                writer.flush()
            n_dirty = sum(v.size for v, _ in per_process.values())
            dirty_recent = [(t, n) for t, n in dirty_recent if previous_end - t < 5.0]
            dirty_recent.append((previous_end, n_dirty))
            self._report(previous_end - t0, writer.n_samples, dirty_recent)
            if duration is not None and previous_end - t0 >= duration:
                return f"duration of {duration:g} s reached"
            if self.popen is not None and self.popen.poll() is not None:
                for identity in [i for i in self.tracked if i.pid == self.popen.pid]:
                    self._close(identity, writer.n_samples)  # it has gone: not alive at the end
                return f"command exited with status {self.popen.returncode}"
            if not self.tracked:
                if self._command_exiting():
                    return f"command exited with status {self.popen.returncode}"
                return "all target processes exited"
            next_round += interval
            if next_round < previous_end:
                self.overruns += 1
                next_round = previous_end

    def _command_exiting(self) -> bool:
        """Waits for a launched command whose memory is gone: it is exiting but may not be a zombie
        yet, and its exit status is calm's."""
        if self.popen is None:
            return False
        try:
            self.popen.wait(TERMINATE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _read_round(self, sample: int) -> tuple[dict[int, tuple[np.ndarray, int]], int]:
        """Reads every followed process once (shared pages once for all, with the hash backend)
        and, at most once a second, their Pss. Returns ({row: (dirty vpns, resident)}, pages read)."""
        writer = self.writer
        assert writer is not None
        per_process: dict[int, tuple[np.ndarray, int]] = {}
        row_of_pid: dict[int, int] = {}
        pages_read = 0
        census = time.monotonic() - self._last_census >= self._census_every
        census_cost = 0.0
        for identity, tracked in list(self.tracked.items()):
            try:
                result = tracked.backend.sample()
                if len(result.maps) == 0:
                    raise ProcessGone(identity.pid)
                if census:
                    begin = time.monotonic()
                    tracked.pss = pss_pages(identity.pid)
                    census_cost += time.monotonic() - begin
            except ProcessGone:
                self._close(identity, sample)
                continue
            pages_read += tracked.backend.pages_read
            per_process[tracked.row] = (result.dirty_vpns, result.n_resident)
            row_of_pid[identity.pid] = tracked.row
            if not result.maps.same_as(tracked.maps):
                writer.add_maps(tracked.row, sample, result.maps)
                tracked.maps = result.maps
        if census:  # at most 5% of calm's time goes to the census: the kernel walks every page table
            self._last_census = time.monotonic()
            self._census_every = max(CENSUS_SECONDS, CENSUS_SHARE * census_cost)
        if self.shared is not None:
            for pid, vpns in self.shared.finish_round().items():
                row = row_of_pid.get(pid)
                if row is not None:  # shared and private pages lie in different regions
                    private, resident = per_process[row]
                    per_process[row] = (np.sort(np.concatenate((private, vpns))), resident)
            pages_read += self.shared.pages_read
        self.events += sum(v.size for v, _ in per_process.values())
        return per_process, pages_read

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
        """Ends a process's stream; `sample` is the first sample without it (FORMAT.md's
        exit_sample), so the last one that holds it is `sample - 1`."""
        tracked = self.tracked.pop(identity)
        assert self.writer is not None
        self.writer.close_process(tracked.row, exit_sample=sample)
        when = (f"after sample {sample - 1}" if sample > tracked.first_sample
                else "before its first sample")
        self.progress.note(f"calm record: pid {identity.pid} exited {when}")

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
            **({"regions": list(self.options.regions)} if self.options.regions else {}),
            "shared_writes": tf.SHARED_READER if self.backend.name == "hash" else tf.SHARED_WRITER,
            "notes": self._notes(),
            "nice": int(self.options.nice),
        }

    def _notes(self) -> list[str]:
        notes = []
        if self.backend.name == "hash":
            from calm.collector.page_reader import hash_implementation

            notes.append(HASH_BLIND_SPOT)
            notes.append("the hash backend reads each shared page once per round through one process "
                         "that maps it and cannot tell which process wrote it: a changed shared page "
                         f"is reported once, not per process (pages hashed with {hash_implementation()})")
        return notes


def record(options: RecordOptions) -> RecordResult:
    """Records per `options`; raises CalmError for anything the user can fix."""
    _validate(options)
    with Progress(quiet=options.quiet) as progress:
        return Recorder(options, progress).run()
