"""What `calm record` is asked (RecordOptions), what it reports (RecordResult), and how it is
stopped (SIGINT/SIGTERM through a self-pipe): the recorder's plain parts, apart from its loop."""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path


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
    ready_file: Path | None = None  # created once recording has started (calm.core.ready)
    regions: list[str] = field(default_factory=list)  # record only mappings whose path contains one
    nice: int = 0  # raise calm's nice level by this much (the service wins the CPU)


# What the hash backend cannot see, said in every hash trace's notes and analysis.
HASH_BLIND_SPOT = (
    "the hash backend compares page contents, so it misses a write that leaves a page's bytes as "
    "they were (the same value written again, e.g. redis-benchmark's fixed SET payload); the "
    "soft-dirty backend sees every write. To check, record the same workload with soft-dirty in a "
    "guest: scripts/calm-vm -- calm record --backend soft-dirty ...")


@dataclass
class RecordResult:
    samples: int
    processes: int
    events: int
    seconds: float  # wall time of the whole run, closing the file included
    overruns: int
    end_reason: str
    backend: str
    command_status: int | None = None  # exit status of a launched command that ended by itself
    span: float = 0.0  # the recording's span (FORMAT.md): t_end of the last sample - t_start of the first
    baseline: float = 0.0  # seconds from the start to the first sample's t_start (the baseline read)
    interval: float = 0.0  # the requested sampling interval
    period_mean: float = 0.0  # achieved sampling period (time between reads), seconds
    period_p95: float = 0.0
    cpu_per_round: float = 0.0  # calm's own CPU seconds per round, mean


class StopSignals:
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
