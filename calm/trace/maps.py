"""A process's memory map as calm stores it: /proc/PID/maps parsed into columns.

It lives in the trace layer because traces store map snapshots in exactly this shape: the
collector fills it from procfs, the reader gives it back, the analyzer attributes pages with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Regions that pagemap cannot usefully describe or that are not the process's own memory.
SKIPPED_PATHS = frozenset({"[vsyscall]", "[vvar]", "[vvar_vclock]", "[vdso]", "[uprobes]"})


@dataclass
class MapsTable:
    """Parsed /proc/PID/maps: one entry per region, columns as arrays (addresses in bytes)."""

    start: np.ndarray
    end: np.ndarray
    perms: list[str]
    offset: np.ndarray
    inode: np.ndarray
    path: list[str]

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
        )

    def select(self, keep: np.ndarray) -> "MapsTable":
        idx = np.flatnonzero(keep)
        return MapsTable(self.start[idx], self.end[idx], [self.perms[i] for i in idx],
                         self.offset[idx], self.inode[idx], [self.path[i] for i in idx])

    def writable(self) -> np.ndarray:
        return np.array([p[1] == "w" for p in self.perms], dtype=bool)

    def scannable(self) -> np.ndarray:
        """Regions whose pages belong to the process (not vsyscall/vvar/vdso)."""
        return np.array([p not in SKIPPED_PATHS for p in self.path], dtype=bool)
