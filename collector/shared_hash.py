"""The hash backend's shared memory: each MAP_SHARED page read once per round for the whole service.

Why: a page of a file, memfd, SysV segment, /dev/shm file or shared anonymous mapping is one page of
memory, however many processes map it. Hashed once per process (PostgreSQL's shared buffers read
through every backend), it cost a read per mapper and reported every write once per mapper. Here
each process's backend only lists the present pages of its writable shared regions (a `SharedView`,
named by object = (device, inode) and page offset); at the end of the round `finish_round` picks
one process that has each page present, reads and hashes the page through it, and compares with
the page's previous hash, kept per object page so it survives the reader changing or exiting.

Who wrote a changed shared page is unknown to a hash: the page is reported once, in the segment of
the process it was read through (the trace's `shared_writes` attribute says so), never in every
process that maps it.

A shared page seen for the first time (not at a process's attach, which is its baseline) counts as
dirty when it holds anything but zeros, except a page of a regular file, whose bytes may simply
come from the file. Hashes of pages no process has present are kept: a page that was unmapped and
comes back unchanged is not dirty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calm.collector import page_hash
from calm.collector.page_reader import PageReader
from calm.collector.procfs import PAGE_SHIFT, ProcessGone
from calm.trace.maps import MapsTable

OBJECT_SHIFT = np.uint64(40)  # object page keys: (object << 40) | page offset (4 PiB objects)
_SHMEM_PREFIXES = ("/dev/zero", "/SYSV", "/memfd:", "/dev/shm/", "[anon_shmem")


@dataclass
class SharedView:
    """The present pages of one process's writable MAP_SHARED regions in one scan."""

    reader: PageReader  # reads this process's memory
    vpns: np.ndarray  # uint64, sorted
    regions: MapsTable  # the shared regions scanned
    region_of: np.ndarray  # int64 per page: row in `regions`

    @classmethod
    def of(cls, reader: PageReader, regions: MapsTable, vpns: np.ndarray) -> "SharedView":
        starts = regions.start >> np.uint64(PAGE_SHIFT)
        region_of = np.searchsorted(starts, vpns, side="right").astype(np.int64) - 1
        return cls(reader, vpns, regions, region_of)

    @property
    def pid(self) -> int:
        return self.reader.pid


def is_shmem(path: str) -> bool:
    """Memory that starts as zeros (shared anonymous, SysV, memfd, /dev/shm), not a disk file."""
    return path == "" or path.startswith(_SHMEM_PREFIXES)


class SharedHashes:
    """Hashes of shared pages by object page, for all processes of one recording."""

    def __init__(self) -> None:
        self._objects: dict[tuple[int, int], int] = {}
        self._zero_start: list[bool] = []  # per object: a first-seen non-zero page was written
        self._keys = np.empty(0, np.uint64)  # sorted object page keys with a known hash
        self._hashes = np.empty(0, np.uint64)
        self._pending: list[SharedView] = []
        self.pages_read = 0  # pages read by the last finish_round (or baselines since)

    def _object_keys(self, view: SharedView) -> np.ndarray:
        regions = view.regions
        ids = np.empty(len(regions), dtype=np.uint64)
        for i in range(len(regions)):  # one iteration per shared region
            identity = (int(regions.dev[i]), int(regions.inode[i]))
            found = self._objects.get(identity)
            if found is None:
                found = self._objects[identity] = len(self._zero_start)
                self._zero_start.append(is_shmem(regions.path[i]))
            ids[i] = found
        shift = np.uint64(PAGE_SHIFT)
        first_page = regions.offset >> shift
        start_vpn = regions.start >> shift
        r = view.region_of
        return (ids[r] << OBJECT_SHIFT) | (first_page[r] + view.vpns - start_vpn[r])

    def baseline(self, view: SharedView) -> None:
        """A process attached: hash the shared pages it has present that no one had, as known."""
        keys = self._object_keys(view)
        known, _ = lookup(self._keys, self._hashes, keys)
        new = np.flatnonzero(~known)
        if new.size == 0:
            return
        keys, first = np.unique(keys[new], return_index=True)
        try:
            hashes, readable = view.reader.read_hash(view.vpns[new[first]])
        except ProcessGone:
            return
        self.pages_read += int(keys.size)
        self._merge(keys[readable], hashes[readable])

    def hashes_of(self, view: SharedView) -> tuple[np.ndarray, np.ndarray]:
        """For each page of `view`, whether its hash is known, and the hash (after `baseline`)."""
        return lookup(self._keys, self._hashes, self._object_keys(view))

    def add(self, view: SharedView) -> None:
        """A process's view for this round; read at `finish_round`."""
        self._pending.append(view)

    def finish_round(self) -> dict[int, np.ndarray]:
        """Reads every shared page present in some process once; returns {pid: sorted vpns of the
        changed pages read through that process}."""
        views, self._pending = self._pending, []
        self.pages_read = 0
        if not views:
            return {}
        keys = np.concatenate([self._object_keys(v) for v in views])
        owner = np.concatenate([np.full(v.vpns.size, i, dtype=np.int64) for i, v in enumerate(views)])
        vpns = np.concatenate([v.vpns for v in views])
        keys, first = np.unique(keys, return_index=True)  # the first view that has each page reads it
        owner, vpns = owner[first], vpns[first]
        read_keys, read_hashes, read_owner, read_vpns = [], [], [], []
        for i in np.unique(owner).tolist():  # one iteration per reading process
            mine = np.flatnonzero(owner == i)
            order = np.argsort(vpns[mine], kind="stable")
            mine = mine[order]
            try:
                hashes, readable = views[i].reader.read_hash(vpns[mine])
            except ProcessGone:  # exited mid-round: its pages keep their hashes until next round
                continue
            self.pages_read += int(mine.size)
            mine = mine[readable]
            read_keys.append(keys[mine])
            read_hashes.append(hashes[readable])
            read_owner.append(np.full(mine.size, i, dtype=np.int64))
            read_vpns.append(vpns[mine])
        if not read_keys:
            return {}
        keys, hashes = np.concatenate(read_keys), np.concatenate(read_hashes)
        owner, vpns = np.concatenate(read_owner), np.concatenate(read_vpns)
        known, previous = lookup(self._keys, self._hashes, keys)
        zero_start = np.array(self._zero_start, dtype=bool)[(keys >> OBJECT_SHIFT).astype(np.int64)]
        dirty = (known & (previous != hashes)) | (~known & zero_start & (hashes != page_hash.ZERO_PAGE_HASH))
        order = np.argsort(keys)
        self._merge(keys[order], hashes[order])
        out: dict[int, np.ndarray] = {}
        for i in np.unique(owner[dirty]).tolist():
            out[views[i].pid] = np.sort(vpns[dirty & (owner == i)])
        return out

    def _merge(self, keys: np.ndarray, hashes: np.ndarray) -> None:
        """Sets the hashes of sorted unique `keys`, keeping every other known page's."""
        if keys.size == 0:
            return
        pos = np.searchsorted(self._keys, keys)
        found = pos < self._keys.size
        found[found] = self._keys[pos[found]] == keys[found]
        self._hashes[pos[found]] = hashes[found]
        if not found.all():
            self._keys = np.insert(self._keys, pos[~found], keys[~found])
            self._hashes = np.insert(self._hashes, pos[~found], hashes[~found])


def lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, whether it is in sorted `keys`, and its value there (0 where absent)."""
    if keys.size == 0:
        return np.zeros(query.size, dtype=bool), np.zeros(query.size, dtype=values.dtype)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    found = keys[pos] == query
    return found, np.where(found, values[pos], 0).astype(values.dtype)
