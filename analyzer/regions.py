"""Which mapped region each dirtied page belongs to, and what kind of memory that is.

Why: "the heap is hot" and "libfoo's .data is hot" call for different fixes, and ELF attribution
needs the file-backed region (path, offset) of a page. Regions are taken from the map snapshots;
a page is assigned to the region of the latest snapshot that contains it (the newest layout wins
when a region was remapped). Lookups are one `searchsorted` per snapshot over pages not yet placed.

The zero-filled tail of an ELF's last writable segment (.bss beyond the file) is an anonymous
mapping placed right after the file-backed one; such regions remember that file in `bss_of`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calm.analyzer.mapped import ProcessMaps

KIND_HEAP = "heap"
KIND_STACK = "stack"
KIND_ANON = "anonymous"
KIND_FILE = "file"
KIND_SPECIAL = "special"
KIND_SHARED = "shared"  # an object mapped MAP_SHARED: its pages are counted once for the service
KIND_UNMAPPED = "unmapped"
KIND_NAMED = "named"  # a range named by --region-names (calm.analyzer.names)


@dataclass(frozen=True)
class Region:
    """One mapped region of one process (byte addresses), or a shared object (`process` is then its
    service space, addresses are offsets in the object, `name` says what it is)."""

    process: int
    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str
    kind: str
    bss_of: str = ""  # ELF path when this anonymous region is that file's .bss tail
    name: str = ""  # a shared object's label (calm.trace.service.SharedObject.label)

    @property
    def label(self) -> str:
        """Short name for tables: the path, [heap], or anonymous (.bss of PATH)."""
        if self.name:
            return self.name
        if self.kind == KIND_FILE:
            return self.path
        if self.bss_of:
            return f"anonymous (.bss of {self.bss_of})"
        if self.kind == KIND_ANON:
            return self.path or "anonymous"
        return self.path or self.kind


UNMAPPED = Region(-1, 0, 0, "", 0, 0, "", KIND_UNMAPPED)


def short_file_name(path: str, width: int = 28) -> str:
    """A file's base name, cut in the middle when long, so that both the library's name and its
    suffix stay readable: '_multiarray_umath.cpython-311-x86_64-linux-gnu.so' ->
    '_multiarray_umath…linux-gnu.so'."""
    name = path.rsplit("/", 1)[-1] or path
    if len(name) <= width:
        return name
    tail = min(12, (width - 1) // 2)
    return name[:width - 1 - tail] + "…" + name[-tail:]


def region_name(kind: str, label: str, bss_of: str = "") -> str:
    """A short name for a kind of memory in figures: '[heap]', 'anonymous', '.bss of libz.so',
    'libc.so.6 (file)'."""
    if bss_of:
        return f".bss of {short_file_name(bss_of, 34)}"
    if kind == KIND_FILE:
        return f"{short_file_name(label, 34)} (file)"
    if kind == KIND_UNMAPPED:
        return "in no recorded region"
    return label


def region_phrase(kind: str, label: str, bss_of: str = "") -> str:
    """The same as a noun phrase for sentences: 'the heap', 'anonymous memory', 'the .bss of
    libz.so (anonymous memory after the file)', 'the mapping of the file libc.so.6'."""
    if bss_of:
        return f"the .bss of {short_file_name(bss_of, 1 << 10)} (anonymous memory after the file)"
    if kind == KIND_HEAP:
        return "the heap"
    if kind == KIND_STACK:
        return "the stack" if label == "[stack]" else f"a thread stack ({label})"
    if kind == KIND_ANON:
        return "anonymous memory" if label == "anonymous" else f"anonymous memory ({label})"
    if kind == KIND_FILE:
        return f"the mapping of the file {short_file_name(label, 1 << 10)}"
    if kind == KIND_UNMAPPED:
        return "memory in no recorded region"
    return f"the {label} mapping"


def region_kind(path: str) -> str:
    if path == "[heap]":
        return KIND_HEAP
    if path.startswith("[stack"):
        return KIND_STACK
    if path == "" or path.startswith("[anon"):
        return KIND_ANON
    if path.startswith("/") or path.startswith("anon_inode:") or path.startswith("memfd:"):
        return KIND_FILE
    return KIND_SPECIAL


def assign_regions(pmaps: ProcessMaps, vpns: np.ndarray, page_size: int,
                   regions: list[Region], index: dict[tuple, int]) -> np.ndarray:
    """Region index (into `regions`, extended as needed) for each sorted vpn; -1 when unmapped."""
    out = np.full(vpns.shape, -1, dtype=np.int64)
    addresses = vpns.astype(np.uint64) * np.uint64(page_size)
    for span in reversed(pmaps.spans):
        todo = np.flatnonzero(out < 0)
        if todo.size == 0:
            break
        maps = span.maps
        order = np.argsort(maps.start, kind="stable")
        starts, ends = maps.start[order], maps.end[order]
        pos = np.searchsorted(starts, addresses[todo], side="right") - 1
        ok = pos >= 0
        ok[ok] = addresses[todo[ok]] < ends[pos[ok]]
        if not ok.any():
            continue
        used = np.unique(pos[ok])
        local_ids = np.full(len(order), -1, dtype=np.int64)
        for p in used.tolist():  # one iteration per region that holds dirtied pages
            local_ids[p] = _region_id(pmaps.row, maps, order, p, regions, index)
        out[todo[ok]] = local_ids[pos[ok]]
    return out


def _region_id(row: int, maps, order: np.ndarray, p: int, regions: list[Region],
               index: dict[tuple, int]) -> int:
    i = int(order[p])
    path = maps.path[i]
    kind = region_kind(path)
    bss_of = ""
    if kind == KIND_ANON and path == "" and p > 0:
        j = int(order[p - 1])
        prev_path = maps.path[j]
        if int(maps.end[j]) == int(maps.start[i]) and region_kind(prev_path) == KIND_FILE:
            bss_of = prev_path
    key = (row, int(maps.start[i]), int(maps.end[i]), maps.perms[i], int(maps.offset[i]), path)
    found = index.get(key)
    if found is None:
        found = len(regions)
        index[key] = found
        regions.append(Region(row, int(maps.start[i]), int(maps.end[i]), maps.perms[i],
                              int(maps.offset[i]), int(maps.inode[i]), path, kind, bss_of))
    return found
