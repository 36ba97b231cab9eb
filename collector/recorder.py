"""The recording loop behind `calm record`.

Why it is shaped like this:
- Everything that can be refused (backend, pids, permissions, output path) is checked before the
  trace file is created or a command is launched, so bad input costs nothing.
- Rounds run on a fixed-rate schedule (round k at start + k * interval, like `perf record -F`). A
  round reads every followed process once; the sample it produces covers the writes between the end
  of the previous round and the start of this one (`t_start`, `t_end`). Writes during a round land
  in that sample or the next one; an overrun (a round longer than the interval) is counted.
- Flushes meet a deadline: one lands before a second has passed since the previous one (the next
  round's expected end is taken into account), so a SIGKILL loses at most a second; the file is
  closed cleanly on SIGINT/SIGTERM (see calm.trace.writer for where and how it is written).
- A full disk stops the recording with one line; the trace keeps every sample flushed before it.
- A process that exits ends its own stream; the recording goes on while any target is alive. Exits
  are watched (pidfds, calm.collector.lifecycle), so a long interval does not delay the end. With
  --children, a process once followed stays followed when its parent exits and it is reparented
  (it is still part of the service), and the recording of a launched command goes on while any of
  its descendants lives.
- A process that execs becomes a new program in a new address space: its row ends at the exec and
  a new row (same pid and start time, the new name, exe and command line) takes over (FORMAT.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import psutil

from calm.core.errors import CalmError
from calm.collector.backends import HashBackend, SoftDirtyBackend, choose_backend
from calm.collector.footprint import CENSUS_SECONDS, CENSUS_SHARE, pss_pages
from calm.collector.procfs import PAGE_SIZE, ProcessGone
from calm.collector.shared_hash import SharedHashes
from calm.trace.maps import MapsTable
from calm.core.progress import Progress
from calm.collector.lifecycle import ExecImage, Waiter, command_ended_early, launch
from calm.collector.recording import RecordOptions, RecordResult, trace_attrs
from calm.collector.targets import ProcessDetails, ProcessIdentity, TargetSet, check_pid, describe, why_no_memory
from calm.core.paths import check_output_path
from calm.core import ready
from calm.trace.space import DiskFull

if TYPE_CHECKING:
    from calm.trace.writer import TraceWriter

FLUSH_DEADLINE_SECONDS = 1.0
TERMINATE_GRACE_SECONDS = 5.0


@dataclass
class _Tracked:
    identity: ProcessIdentity
    row: int
    backend: SoftDirtyBackend | HashBackend
    maps: MapsTable
    first_sample: int  # the first sample that reads it
    pss: int = 0  # proportional resident pages at the last census
    image: ExecImage | None = None  # what changes when it execs


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
        if self.shared is not None:  # load numba and its compiled loops before the clock starts
            from calm.collector import present_pages
            from calm.collector.page_reader import hash_implementation

            hash_implementation()
            present_pages.implementation()
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
        self.waiter: Waiter | None = None
        self._exited: set[ProcessIdentity] = set()  # seen gone by their pidfd, not yet by a round
        self._flush_seconds = 0.0  # how long the last flush took

    # -- targets -------------------------------------------------------------------------------
    def _roots(self) -> list[psutil.Process]:
        if self.options.pids:
            return [check_pid(pid) for pid in self.options.pids]
        self.popen = launch(self.options.command)
        return [psutil.Process(self.popen.pid)]

    def _prepare(self, proc: psutil.Process, *, required: bool) -> _Pending | None:
        """Opens a process and takes its baseline; None (with a note) for an optional one that
        cannot be read, CalmError for a required one."""
        try:
            details = describe(proc, cmdline=not self.options.no_cmdline)
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
            if required and self.popen is not None:
                raise command_ended_early(self.popen, self.options.command[0]) from None
            if required:
                raise CalmError(f"pid {proc.pid} {why_no_memory(proc.pid)}") from None
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
                                                  self.writer.n_samples, pss, ExecImage.read(details.identity.pid))
        self.n_processes += 1
        assert self.waiter is not None
        self.waiter.watch(details.identity.pid, details.identity)

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> RecordResult:
        options = self.options
        self.waiter = waiter = Waiter()
        status, end_reason = "complete", ""
        t0 = time.monotonic()
        try:
            if options.ready_file is not None:
                ready.remove_stale(options.ready_file)
            if options.nice:
                os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + options.nice))
            roots = self._roots()
            if self.popen is not None:
                waiter.watch(self.popen.pid, "command")
            targets = TargetSet(roots, options.children)
            # Every initial target is opened before the file exists: a refusal leaves nothing.
            prepared = [self._prepare(proc, required=proc in roots)
                        for proc in (targets.current() or roots)]
            baseline_end = time.monotonic()  # sample 0 holds the writes made from here on
            self.progress.note(f"calm record: using the {self.why}")
            # h5py loads only now, inside the first interval: the first sample is not delayed by it.
            from calm.trace.writer import TraceWriter

            self.writer = TraceWriter(options.output, force=options.force,
                                      attrs=trace_attrs(options, self.backend, t0))
            for pending in prepared:
                if pending is not None:
                    self._register(pending)
            end_reason = self._loop(targets, waiter, t0, baseline_end)
            if waiter.received is not None and self.writer.n_samples == 0:
                status, end_reason = "failed", end_reason + " before the first sample"
                raise KeyboardInterrupt  # Ctrl-C while starting: nothing recorded, nothing kept
        except DiskFull as exc:
            if self.writer is None:
                status = "failed"
                raise CalmError(str(exc)) from None
            n = self.writer.n_flushed
            status, end_reason = "failed", f"disk full after {n} samples"
            held = f"samples 0..{n - 1}" if n else "no sample (nothing was kept)"
            raise CalmError(f"disk full after {n} samples; the trace holds {held}") from None
        except (CalmError, KeyboardInterrupt):
            status, end_reason = "failed", end_reason or "error"
            raise
        except BaseException as exc:  # a bug: keep what was recorded, then show it
            status, end_reason = "failed", f"internal error: {exc!r}"
            raise
        finally:
            waiter.restore()
            try:
                if self.writer is not None:
                    self.writer.close(status=status, end_reason=end_reason)
            finally:
                self._stop_command()
        first, last = self._times or (0.0, 0.0)
        periods = np.diff(self._periods) if len(self._periods) > 1 else np.zeros(1)
        return RecordResult(self.writer.n_samples, self.n_processes, self.events,
                            time.monotonic() - t0, self.overruns, end_reason, self.backend.name,
                            self._command_status, span=last - first, baseline=first,
                            interval=options.interval, period_mean=float(np.mean(periods)),
                            period_p95=float(np.percentile(periods, 95)),
                            cpu_per_round=float(np.mean(self._cpu)) if self._cpu else 0.0)

    def _ends_now(self, exited: list[object]) -> bool:
        """Whether the exits the pidfds reported end the recording (then a last round runs now)."""
        for key in exited:
            if key == "command":
                if not self.options.children:
                    return True
            else:
                self._exited.add(key)
        command_done = self.popen is None or self.popen.poll() is not None
        return command_done and all(identity in self._exited for identity in self.tracked)

    def _loop(self, targets: TargetSet, waiter: Waiter, t0: float, baseline_end: float) -> str:
        from calm.trace.writer import RoundCost  # with the writer: h5py loads after start-up

        writer = self.writer
        assert writer is not None
        interval, duration = self.options.interval, self.options.duration
        previous_end = baseline_end
        next_round = t0 + interval
        dirty_recent: list[tuple[float, int]] = []
        while True:
            deadline = next_round if duration is None else min(next_round, t0 + duration)
            exited = waiter.sleep_until(deadline)
            if waiter.received is not None:
                return f"stopped by {signal.Signals(waiter.received).name}"
            if exited and not self._ends_now(exited):
                continue  # the next round closes them; the schedule goes on
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
            next_round += interval
            if next_round < previous_end:
                self.overruns += 1
                next_round = previous_end
            if sample == 0 and self.options.ready_file is not None:
                # the trace exists with its first sample: a stop from now on keeps a trace, and
                # every write from now on lands in it
                writer.flush()
                ready.announce(self.options.ready_file)
            self._flush_if_due(next_round + (previous_end - round_begin))
            n_dirty = sum(v.size for v, _ in per_process.values())
            dirty_recent = [(t, n) for t, n in dirty_recent if previous_end - t < 5.0]
            dirty_recent.append((previous_end, n_dirty))
            self._report(previous_end - t0, writer.n_samples, dirty_recent)
            if duration is not None and previous_end - t0 >= duration:
                return f"duration of {duration:g} s reached"
            if self.popen is not None and self.popen.poll() is not None and not self.options.children:
                for identity in [i for i in self.tracked if i.pid == self.popen.pid]:
                    self._close(identity, writer.n_samples)  # it has gone: not alive at the end
                return f"command exited with status {self.popen.returncode}"
            if not self.tracked:
                if self._command_exiting():
                    return f"command exited with status {self.popen.returncode}"
                return "all target processes exited"

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
            if not result.maps.same_as(tracked.maps):
                image = ExecImage.read(identity.pid)
                if image is not None and tracked.image is not None and image != tracked.image:
                    self._exec(tracked, image, sample)  # this sample's pages are the new program's
                writer.add_maps(tracked.row, sample, result.maps)
                tracked.maps = result.maps
            per_process[tracked.row] = (result.dirty_vpns, result.n_resident)
            row_of_pid[identity.pid] = tracked.row
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

    def _exec(self, tracked: _Tracked, image: ExecImage, sample: int) -> None:
        """The process exec'd: its old row ends here, a new row with its new program begins."""
        assert self.writer is not None
        try:
            details = describe(psutil.Process(tracked.identity.pid), cmdline=not self.options.no_cmdline)
        except psutil.Error:
            return  # gone meanwhile: the next round closes it
        if details.identity != tracked.identity:
            return
        self.writer.close_process(tracked.row, exit_sample=sample)
        tracked.row = self.writer.open_process(
            pid=details.identity.pid, ppid=details.ppid, start_time_unix=details.identity.create_time,
            name=details.name, cmdline=details.cmdline, exe=details.exe, title=details.title,
        )
        tracked.image = image
        self.n_processes += 1
        self.progress.note(f"calm record: pid {tracked.identity.pid} exec'd {details.exe or details.name} "
                           f"(sample {sample})")

    def _flush_if_due(self, next_round_end: float) -> None:
        """Flushes now unless the next round still ends, and its flush lands, within the deadline."""
        writer = self.writer
        assert writer is not None
        if next_round_end + self._flush_seconds < writer.last_flush + FLUSH_DEADLINE_SECONDS:
            return
        started = time.monotonic()
        writer.flush()
        self._flush_seconds = time.monotonic() - started

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
        self._exited.discard(identity)
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

def record(options: RecordOptions) -> RecordResult:
    """Records per `options`; raises CalmError for anything the user can fix."""
    _validate(options)
    with Progress(quiet=options.quiet) as progress:
        return Recorder(options, progress).run()
