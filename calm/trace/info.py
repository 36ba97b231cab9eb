"""What a trace says about itself and its processes (root attributes, process rows): plain
records, apart from the reader that fills them."""

from __future__ import annotations

from dataclasses import dataclass

from calm.trace import format as tf


@dataclass(frozen=True)
class ProcessInfo:
    """One followed process (a row of /processes)."""

    row: int
    pid: int
    ppid: int
    name: str
    cmdline: list[str]
    exe: str
    start_time_unix: float
    first_sample: int  # -1: never sampled
    last_sample: int  # last sample holding a segment of it
    exit_sample: int  # first sample without it (may equal n_samples), -1 if alive at the end
    execed: bool = False  # its row ended with an exec: a later row (same pid and start) continues it
    title: str = ""  # the role it gives itself in its cmdline ("postgres: checkpointer"), 1.1

    @property
    def label(self) -> str:
        """How tables name it: its role where it says one, else its name."""
        return self.title or self.name


@dataclass(frozen=True)
class TraceInfo:
    """The root attributes of a trace."""

    format_version: int
    format_minor: int  # 0 for files before minor versions existed
    page_size: int
    backend: str
    backend_method: str  # "pagemap-scan", "pagemap-read", "page-hash" ("" in older files)
    interval: float
    kernel_release: str
    hostname: str
    start_time: str
    start_time_unix: float
    start_monotonic: float  # CLOCK_MONOTONIC seconds that t_start/t_end are relative to
    tool_version: str
    command: list[str]
    status: str
    end_reason: str
    regions: tuple[str, ...] = ()  # `calm record --region` patterns; () when every mapping was read
    shared_writes: str = ""  # format.SHARED_WRITER / SHARED_READER; "" in a 1.0 trace
    notes: tuple[str, ...] = ()  # sentences the recorder left for readers (1.1)
    nice: int = 0
    cmdline_recorded: bool = True  # False: recorded with --no-cmdline (names only, no argv)

    @property
    def version(self) -> str:
        return f"{self.format_version}.{self.format_minor}"

    @property
    def writer_known(self) -> bool:
        """Whether a dirty page of a shared region in a process's segment means that process wrote
        it: yes for soft-dirty (per page-table entry), no for the hash backend (see format)."""
        if self.shared_writes:
            return self.shared_writes == tf.SHARED_WRITER
        return self.backend == "soft-dirty"


def recording_identity(info: TraceInfo, n_samples: int) -> dict:
    """What tells one recording from another even after a copy or a rename: where and when it
    started, and how many samples it holds (results.json keeps it, `calm report` compares it)."""
    return {"hostname": info.hostname, "start_time": info.start_time,
            "start_time_unix": info.start_time_unix, "samples": n_samples}
