"""A process's memory map as calm stores it: /proc/PID/maps parsed into columns.

It lives in the trace layer because traces store map snapshots in exactly this shape: the
collector fills it from procfs, the reader gives it back, the analyzer attributes pages with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Regions that pagemap cannot usefully describe or that are not the process's own memory.
SKIPPED_PATHS = frozenset({"[vsyscall]", "[vvar]", "[vvar_vclock]", "[vdso]", "[uprobes]"})

# The `--region` pattern that selects regions without a path (anonymous memory).
ANONYMOUS_REGION = "[anon]"


@dataclass
class MapsTable:
    """Parsed /proc/PID/maps: one entry per region, columns as arrays (addresses in bytes)."""

    start: np.ndarray
    end: np.ndarray
    perms: list[str]
    offset: np.ndarray
    inode: np.ndarray
    path: list[str]
    # device of the mapped file (os.makedev); all zeros where unknown (a 1.0 trace, a hand-made table)
    dev: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.dev is None:
            self.dev = np.zeros(len(self.start), dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.start)

    def same_as(self, other: "MapsTable | None") -> bool:
        return (
            other is not None
            and len(self) == len(other)
            and np.array_equal(self.start, other.start)
            and np.array_equal(self.end, other.end)
            and self.perms == other.perms
            and self.path == other.path
            and np.array_equal(self.offset, other.offset)
            and np.array_equal(self.inode, other.inode)
        )

    def select(self, keep: np.ndarray) -> "MapsTable":
        idx = np.flatnonzero(keep)
        return MapsTable(self.start[idx], self.end[idx], [self.perms[i] for i in idx],
                         self.offset[idx], self.inode[idx], [self.path[i] for i in idx], self.dev[idx])

    def writable(self) -> np.ndarray:
        return np.array([p[1] == "w" for p in self.perms], dtype=bool)

    def matching(self, patterns: tuple[str, ...] | list[str]) -> np.ndarray:
        """Regions whose path contains one of `patterns` (as /proc/PID/maps shows it, e.g.
        "/memfd:memory-backend-memfd (deleted)", "[heap]"); the pattern "[anon]" stands for
        regions without a path. No patterns: every region."""
        if not patterns:
            return np.ones(len(self), dtype=bool)
        return np.array([any(pattern in path if pattern != ANONYMOUS_REGION else not path
                             for pattern in patterns) for path in self.path], dtype=bool)

    def shared(self) -> np.ndarray:
        """MAP_SHARED regions ("s" in perms): their pages belong to an object (file, memfd, SysV
        segment, /dev/shm file, shared anonymous memory) that other processes may map too."""
        return np.array([p[3] == "s" for p in self.perms], dtype=bool)

    def scannable(self) -> np.ndarray:
        """Regions whose pages belong to the process (not vsyscall/vvar/vdso)."""
        return np.array([p not in SKIPPED_PATHS for p in self.path], dtype=bool)
