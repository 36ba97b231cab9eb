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
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from calm.core.errors import CalmError
from calm.trace.maps import MapsTable

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGE_SHIFT = PAGE_SIZE.bit_length() - 1

# pagemap entry bits
PM_PRESENT = np.uint64(1 << 63)
PM_SOFT_DIRTY = np.uint64(1 << 55)

CLEAR_REFS_SOFT_DIRTY = b"4"


class ProcessGone(Exception):
    """The target exited while we were reading it (ESRCH/ENOENT, or an empty read)."""


def raise_for(exc: OSError, pid: int, what: str) -> None:
    if exc.errno in (errno.ESRCH, errno.ENOENT):
        raise ProcessGone(pid) from exc
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = ("even as root: the target is protected from ptrace-level access, e.g. it belongs to "
                "another user namespace or a Yama/LSM policy forbids it" if os.geteuid() == 0
                else "run calm as the target's user or as root")
        raise CalmError(f"no permission to read {what} of pid {pid} ({hint})") from exc
    raise CalmError(f"cannot read {what} of pid {pid}: {exc.strerror}") from exc


def read_maps_text(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            return f.read()
    except OSError as exc:
        raise_for(exc, pid, "the memory map")
        raise  # unreachable: raise_for always raises


def read_maps(pid: int) -> MapsTable:
    """Parses /proc/PID/maps."""
    return parse_maps(read_maps_text(pid))


class MapsReader:
    """Reads /proc/PID/maps every sample, parsing it again only when its text changed: most
    samples see the same map, and parsing hundreds of lines in Python costs more than reading."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._text = b""
        self._maps: MapsTable | None = None

    def read(self) -> MapsTable:
        text = read_maps_text(self.pid)
        if self._maps is None or text != self._text:
            self._text, self._maps = text, parse_maps(text)
        return self._maps


def parse_maps(text: bytes) -> MapsTable:
    """Parses the text of /proc/PID/maps (one line per region; the loop is per region, not per page)."""
    lines = text.splitlines()
    n = len(lines)
    start = np.empty(n, np.uint64)
    end = np.empty(n, np.uint64)
    offset = np.empty(n, np.uint64)
    inode = np.empty(n, np.uint64)
    dev = np.empty(n, np.uint64)
    perms: list[str] = []
    paths: list[str] = []
    for i, line in enumerate(lines):
        fields = line.split(None, 5)
        lo, hi = fields[0].split(b"-")
        start[i] = int(lo, 16)
        end[i] = int(hi, 16)
        perms.append(fields[1].decode())
        offset[i] = int(fields[2], 16)
        major, minor = fields[3].split(b":")
        dev[i] = os.makedev(int(major, 16), int(minor, 16))
        inode[i] = int(fields[4])
        paths.append(fields[5].decode(errors="replace").strip() if len(fields) > 5 else "")
    return MapsTable(start, end, perms, offset, inode, paths, dev)


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

    def buffer(self, n: int) -> np.ndarray:
        """The reusable read buffer, at least n entries long (its first n entries)."""
        if self._buffer.size < n:
            self._buffer = np.empty(max(n, 2 * self._buffer.size), dtype=np.uint64)
        return self._buffer[:n]

    def read(self, start_vpn: int, end_vpn: int) -> np.ndarray:
        """Entries for pages [start_vpn, end_vpn); a view into the internal buffer (copy to keep)."""
        return self.read_into(start_vpn, end_vpn, self.buffer(end_vpn - start_vpn))

    def read_into(self, start_vpn: int, end_vpn: int, out: np.ndarray) -> np.ndarray:
        """Reads entries for pages [start_vpn, end_vpn) into `out` with as few syscalls as possible."""
        n = end_vpn - start_vpn
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

    def __enter__(self) -> "Pagemap":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class PagemapBatch:
    """Pagemap entries of several page ranges read back to back into one array.

    Why batches: a process has hundreds of small regions; decoding each one separately costs more
    in numpy call overhead than reading it. A batch holds ranges up to a budget of entries, so
    flags are decoded in one vectorised pass, and huge reserved regions are split.
    """

    entries: np.ndarray  # uint64, all ranges concatenated (a view into the reader's buffer)
    first_vpn: np.ndarray  # int64, first page of each range
    offset: np.ndarray  # int64, where each range starts in `entries`
    region: np.ndarray  # int64, index of the region (in the scanned MapsTable) of each range

    def vpns(self, idx: np.ndarray) -> np.ndarray:
        """Virtual page numbers of entry positions `idx` (sorted positions give sorted vpns)."""
        r = np.searchsorted(self.offset, idx, side="right") - 1
        return (idx - self.offset[r] + self.first_vpn[r]).astype(np.uint64)

    def regions_of(self, idx: np.ndarray) -> np.ndarray:
        return self.region[np.searchsorted(self.offset, idx, side="right") - 1]

    def locate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`vpns(idx)` and `regions_of(idx)` for sorted positions `idx` (the hash backend needs both
        per present page). Searching each range's start among the positions and repeating the
        range numbers costs O(len(idx)) with a small constant, where a binary search per position
        (`vpns`) was the largest numpy cost of a hash round after the pagemap read."""
        bounds = np.searchsorted(idx, self.offset)
        r = np.repeat(np.arange(self.offset.size), np.diff(np.append(bounds, idx.size)))
        return (idx - self.offset[r] + self.first_vpn[r]).astype(np.uint64), self.region[r]


def iter_batches(pagemap: Pagemap, maps: MapsTable, budget: int = 1 << 21) -> Iterator[PagemapBatch]:
    """Reads the pagemap of every region of `maps`, in batches of at most `budget` entries."""
    starts = (maps.start >> np.uint64(PAGE_SHIFT)).astype(np.int64).tolist()
    ends = (maps.end >> np.uint64(PAGE_SHIFT)).astype(np.int64).tolist()
    ranges: list[tuple[int, int, int]] = []  # (region, lo, hi) pieces of at most `budget`
    for region, (lo, hi) in enumerate(zip(starts, ends)):
        ranges.extend((region, a, min(hi, a + budget)) for a in range(lo, hi, budget))
    batch: list[tuple[int, int, int]] = []
    size = 0
    for piece in ranges:
        n = piece[2] - piece[1]
        if batch and size + n > budget:
            yield _read_batch(pagemap, batch, size)
            batch, size = [], 0
        batch.append(piece)
        size += n
    if batch:
        yield _read_batch(pagemap, batch, size)


def _read_batch(pagemap: Pagemap, pieces: list[tuple[int, int, int]], size: int) -> PagemapBatch:
    entries = pagemap.buffer(size)
    offsets = np.empty(len(pieces), dtype=np.int64)
    pos = 0
    for i, (_, lo, hi) in enumerate(pieces):
        offsets[i] = pos
        pagemap.read_into(lo, hi, entries[pos:pos + hi - lo])
        pos += hi - lo
    return PagemapBatch(entries, np.array([p[1] for p in pieces], dtype=np.int64), offsets,
                        np.array([p[0] for p in pieces], dtype=np.int64))


def flag_bytes(entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bytes 6 and 7 of each entry (bits 48-63), as strided views: decoding flags from one byte
    per entry touches an eighth of the data that whole-word masks would."""
    as_bytes = entries.view(np.uint8).reshape(-1, 8)
    if sys.byteorder == "little":
        return as_bytes[:, 6], as_bytes[:, 7]
    return as_bytes[:, 1], as_bytes[:, 0]


# Flags within byte 7 (bits 56-63) and byte 6 (bits 48-55) of an entry.
B7_PRESENT, B7_SWAPPED, B7_FILE = 0x80, 0x40, 0x20  # bits 63, 62, 61 (file or shared anon)
B7_UFFD_WP, B7_EXCLUSIVE = 0x02, 0x01  # bits 57 (userfaultfd write-protected), 56 (mapped once)
B6_SOFT_DIRTY = 0x80


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
