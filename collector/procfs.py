"""The procfs layer: /proc/PID/maps, /proc/PID/pagemap and /proc/PID/clear_refs.

Why it looks like this: pagemap is 8 bytes per virtual page, so a 1 GiB region is a 2 MiB read.
We read each mapped range with one `preadv` straight into a reusable numpy uint64 buffer and decode
flags with vectorised bit operations: no Python work per page. Errors are turned into `CalmError`
with the reason a user can act on (gone, permission, unsupported). See
Documentation/admin-guide/mm/pagemap.rst and soft-dirty.rst in the kernel tree for the bits.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import numpy as np

from calm.errors import CalmError

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1

# pagemap entry bits
PM_PRESENT = np.uint64(1 << 63)
PM_SWAPPED = np.uint64(1 << 62)
PM_FILE_OR_SHARED_ANON = np.uint64(1 << 61)
PM_UFFD_WP = np.uint64(1 << 57)
PM_EXCLUSIVE = np.uint64(1 << 56)
PM_SOFT_DIRTY = np.uint64(1 << 55)
PM_PFN_MASK = np.uint64((1 << 55) - 1)

CLEAR_REFS_SOFT_DIRTY = b"4"

# Regions that pagemap cannot usefully describe or that are not the process's own memory.
SKIPPED_PATHS = frozenset({"[vsyscall]", "[vvar]", "[vvar_vclock]", "[vdso]", "[uprobes]"})


class ProcessGone(Exception):
    """The target exited while we were reading it (ESRCH/ENOENT, or an empty read)."""


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


def raise_for(exc: OSError, pid: int, what: str) -> None:
    if exc.errno in (errno.ESRCH, errno.ENOENT):
        raise ProcessGone(pid) from exc
    if exc.errno in (errno.EACCES, errno.EPERM):
        raise CalmError(
            f"no permission to read {what} of pid {pid} (run calm as the target's user or as root)"
        ) from exc
    raise CalmError(f"cannot read {what} of pid {pid}: {exc.strerror}") from exc


def read_maps(pid: int) -> MapsTable:
    """Parses /proc/PID/maps (one line per region; the loop is per region, not per page)."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            text = f.read()
    except OSError as exc:
        raise_for(exc, pid, "the memory map")
    lines = text.splitlines()
    n = len(lines)
    start = np.empty(n, np.uint64)
    end = np.empty(n, np.uint64)
    offset = np.empty(n, np.uint64)
    inode = np.empty(n, np.uint64)
    perms: list[str] = []
    paths: list[str] = []
    for i, line in enumerate(lines):
        fields = line.split(None, 5)
        lo, hi = fields[0].split(b"-")
        start[i] = int(lo, 16)
        end[i] = int(hi, 16)
        perms.append(fields[1].decode())
        offset[i] = int(fields[2], 16)
        inode[i] = int(fields[4])
        paths.append(fields[5].decode(errors="replace").strip() if len(fields) > 5 else "")
    return MapsTable(start, end, perms, offset, inode, paths)


class Pagemap:
    """An open /proc/PID/pagemap with a reusable read buffer."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise_for(exc, pid, "the pagemap")
        self._buffer = np.empty(0, dtype=np.uint64)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, start_vpn: int, end_vpn: int) -> np.ndarray:
        """Entries for pages [start_vpn, end_vpn); a view into the internal buffer (copy to keep)."""
        n = end_vpn - start_vpn
        if self._buffer.size < n:
            self._buffer = np.empty(max(n, 2 * self._buffer.size), dtype=np.uint64)
        out = self._buffer[:n]
        view = memoryview(out).cast("B")
        done = 0
        nbytes = n * 8
        while done < nbytes:
            try:
                got = os.preadv(self.fd, [view[done:]], start_vpn * 8 + done)
            except OSError as exc:
                raise_for(exc, self.pid, "the pagemap")
            if got == 0:
                raise ProcessGone(self.pid)
            done += got
        return out

    def read_regions(self, maps: MapsTable) -> tuple[np.ndarray, np.ndarray]:
        """All entries of the given regions, concatenated, with the vpn of each entry."""
        starts = (maps.start >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        ends = (maps.end >> np.uint64(PAGE_SHIFT)).astype(np.int64)
        total = int((ends - starts).sum())
        entries = np.empty(total, dtype=np.uint64)
        pos = 0
        for lo, hi in zip(starts.tolist(), ends.tolist()):
            entries[pos:pos + hi - lo] = self.read(lo, hi)
            pos += hi - lo
        return entries, vpns_of_regions(starts, ends)

    def __enter__(self) -> "Pagemap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def vpns_of_regions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenated arange(start, end) for each region, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.uint64)
    # Each output position = its region's start + index within the region.
    region_first = np.cumsum(lengths) - lengths
    out = np.arange(total, dtype=np.int64)
    out -= np.repeat(region_first - starts, lengths)
    return out.astype(np.uint64)


def clear_soft_dirty(pid: int) -> None:
    """Writes 4 to /proc/PID/clear_refs: clears soft-dirty bits and write-protects the pages."""
    try:
        fd = os.open(f"/proc/{pid}/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise_for(exc, pid, "clear_refs")
    try:
        os.write(fd, CLEAR_REFS_SOFT_DIRTY)
    except OSError as exc:
        raise_for(exc, pid, "clear_refs")
    finally:
        os.close(fd)


def resident_mask(entries: np.ndarray) -> np.ndarray:
    """Pages that hold data: present in RAM or swapped out."""
    return (entries & (PM_PRESENT | PM_SWAPPED)) != 0


def soft_dirty_mask(entries: np.ndarray) -> np.ndarray:
    """Soft-dirty pages. Bit 55 alone is not enough: a VMA created since the last clear reports
    soft-dirty on every entry, mapped or not, so only resident pages count."""
    return ((entries & PM_SOFT_DIRTY) != 0) & resident_mask(entries)
