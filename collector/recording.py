"""What `calm record` is asked (RecordOptions), what it reports (RecordResult), and how it is
with (the trace's root attributes): the recorder's plain parts, apart from its loop."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from calm.collector.procfs import PAGE_SIZE
from calm.core.version import __version__
from calm.trace import format as tf

if TYPE_CHECKING:
    from calm.collector.backends import BackendChoice


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
    no_cmdline: bool = False  # store process names only, never an argument vector


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


def trace_attrs(options: RecordOptions, backend: "BackendChoice", t0: float) -> dict[str, object]:
    """The trace's root attributes (FORMAT.md)."""
    now = time.time()
    return {
        "page_size": PAGE_SIZE,
        "backend": backend.name,
        "backend_method": backend.method,
        "interval": float(options.interval),
        "kernel_release": platform.release(),
        "hostname": socket.gethostname(),
        "start_time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "start_time_unix": now,
        "start_monotonic": t0,
        "tool_version": __version__,
        # with --no-cmdline the program's name only, as for every process (a secret in argv
        # must not reach the trace, nor the report made from it)
        "command": ([os.path.basename(options.command[0])] if options.no_cmdline
                    else json.loads(json.dumps(options.command))) if options.command else [],
        "cmdline_recorded": 0 if options.no_cmdline else 1,
        **({"regions": list(options.regions)} if options.regions else {}),
        "shared_writes": tf.SHARED_READER if backend.name == "hash" else tf.SHARED_WRITER,
        "notes": _notes(backend),
        "nice": int(options.nice),
    }


def _notes(backend: "BackendChoice") -> list[str]:
    notes = []
    if backend.name == "hash":
        from calm.collector.page_reader import hash_implementation

        notes.append(HASH_BLIND_SPOT)
        notes.append("the hash backend reads each shared page once per round through one process "
                     "that maps it and cannot tell which process wrote it: a changed shared page "
                     f"is reported once, not per process (pages hashed with {hash_implementation()})")
    return notes
