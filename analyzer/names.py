"""Named address ranges: names for memory that /proc/PID/maps shows only as anonymous.

Why: a managed runtime's heap, a database's buffer pool or an allocator's arena is plain anonymous
memory to the kernel, so region attribution can only say "anonymous". The runtime itself knows:
a JVM reports its heap range (`jcmd PID GC.heap_info`) and, with native memory tracking, every
range it reserved (`jcmd PID VM.native_memory detail`). `calm analyze --region-names FILE` takes
such ranges, one a line, in the notation of /proc/PID/maps:

    # pid start-end name
    4242 e0000000-100000000 Java heap

Pages inside a named range are attributed to that name, whatever mapping holds them (a range
overrides the maps, so ELF symbols are not looked up inside it); ranges are matched by pid, and
names for a pid the trace does not hold are reported in the notes. Work is one `searchsorted` per
range over the pages of its process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calm.analyzer.model import PageTable
from calm.analyzer.regions import KIND_NAMED, Region
from calm.core.errors import CalmError

_LINE = re.compile(r"(\d+)\s+(?:0x)?([0-9a-fA-F]+)-(?:0x)?([0-9a-fA-F]+)\s+(\S.*)")


@dataclass(frozen=True)
class NamedRange:
    pid: int
    start: int  # bytes, inclusive
    end: int  # bytes, exclusive
    name: str


def load_region_names(path: str | Path) -> list[NamedRange]:
    """Parses a names file; a malformed line is one CalmError naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalmError(f"cannot read region names {path}: {getattr(exc, 'strerror', None) or exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if not m:
            raise CalmError(f"{path}:{number}: expected 'PID START-END NAME' (hex addresses as in "
                            f"/proc/PID/maps), got '{line[:80]}'")
        start, end = int(m[2], 16), int(m[3], 16)
        if not start < end:
            raise CalmError(f"{path}:{number}: range {m[2]}-{m[3]} is empty (start must be below end)")
        out.append(NamedRange(int(m[1]), start, end, m[4].strip()))
    if not out:
        raise CalmError(f"{path} names no range")
    return out


def apply_region_names(pages: PageTable, regions: list[Region], names: list[NamedRange],
                       rows_of_pid: dict[int, list[int]], page_size: int) -> list[str]:
    """Re-attributes the pages inside each named range to a region of that name (appended to
    `regions`); returns notes for the user."""
    notes = []
    missing = sorted({n.pid for n in names if n.pid not in rows_of_pid})
    if missing:
        notes.append(f"region names for pid(s) {missing} ignored: not in this analysis")
    named_pages = 0
    for rng in names:
        for row in rows_of_pid.get(rng.pid, []):
            lo, hi = np.searchsorted(pages.process, [row, row + 1])
            vpn = pages.vpn[lo:hi].astype(np.int64)
            first, last = np.searchsorted(vpn, [rng.start // page_size, -(-rng.end // page_size)])
            if last <= first:
                continue
            regions.append(Region(row, rng.start, rng.end, "", 0, 0, rng.name, KIND_NAMED))
            pages.region[lo + first:lo + last] = len(regions) - 1
            named_pages += int(last - first)
    notes.append(f"{named_pages} dirtied page(s) attributed to {len({n.name for n in names})} named "
                 f"range name(s) from --region-names")
    return notes
