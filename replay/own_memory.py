"""A trace's own memory as the RAM to migrate (`calm replay -s trace@RATE`).

Instead of spreading the footprint over a hypothetical RAM, the recorded regions are the RAM,
each page at its own offset: the regions the backend read when each process's recording began
(the trace's residency runs, format minor 1), laid end to end in service-key order (each
process's private memory by address, then each shared object once: `calm.trace.service`), plus
any page the trace writes outside them (a region mapped later), which held nothing before. For a
QEMU guest recorded from the host with `--region` on its RAM mapping, that is the guest's RAM.

Which pages are zero, as a migration engine sees them at the start of the replay: pages that
were not resident (never touched, or a file's hole: they read as zeros) and pages the hash backend
found all zero; the soft-dirty backend finds only pages mapping the shared zero page (with
PAGEMAP_SCAN) and counts every other resident page as data. A page written during the part of
the recording that `--skip` left out is data; a footprint page is data from its first write on
(`replay.simulator`). A page the guest zeroes again later is still counted as data (the trace
records that a page was written, not what it holds).
"""

from __future__ import annotations

import numpy as np

from calm.core.errors import CalmError
from calm.replay.layout import RamLayout
from calm.replay.trace_map import MappedTrace
from calm.trace.format import RESIDENCY_RESIDENT


def own_layout(mapped: MappedTrace) -> RamLayout:
    """The RAM layout of a trace's own memory (see the module docstring)."""
    res = mapped.residency
    if res is None or mapped.keys is None:
        raise CalmError(f"trace {mapped.path} does not record which pages were resident (recorded by an older calm), "
                        "so it cannot be replayed on its own memory (trace@RATE, calm predict); replay it on a RAM "
                        "size instead, e.g. -s 1GiB@10Gbit")
    k0, k1, state = res["start"], res["stop"], res["state"]  # service keys (trace_map._resident_runs)
    fp = mapped.keys
    before = mapped.written_before if mapped.written_before is not None else np.empty(0, np.uint64)
    written = np.union1d(fp, before)
    run = np.searchsorted(k0, written, side="right") - 1
    inside = (run >= 0) & (written < k1[np.maximum(run, 0)])
    outside = written[~inside]  # pages mapped after the recording began: empty until written
    starts = np.concatenate((k0, outside))
    ends = np.concatenate((k1, outside + np.uint64(1)))
    states = np.concatenate((state, np.zeros(outside.size, dtype=state.dtype)))
    order = np.argsort(starts, kind="stable")
    starts, ends, states = starts[order], ends[order], states[order]
    length = (ends - starts).astype(np.int64)
    base = np.cumsum(length) - length  # RAM offset of each interval
    n_pages = int(length.sum())
    if n_pages == 0:
        raise CalmError(f"trace {mapped.path} recorded no memory to migrate")
    iv = np.searchsorted(starts, fp, side="right") - 1
    position = base[iv] + (fp - starts[iv]).astype(np.int64)
    zero = states != RESIDENCY_RESIDENT
    zs, ze = base[zero], base[zero] + length[zero]
    if before.size:
        wb = before
        jv = np.searchsorted(starts, wb, side="right") - 1
        ok = (jv >= 0) & (wb < ends[np.maximum(jv, 0)])
        points = np.unique(base[jv[ok]] + (wb[ok] - starts[jv[ok]]).astype(np.int64))
        zs, ze = _cut(zs, ze, points)
    return RamLayout(n_pages, position, zs, ze, kind="own memory")


def _cut(zs: np.ndarray, ze: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero runs [zs, ze) without the pages `points` (sorted, unique)."""
    run = np.searchsorted(zs, points, side="right") - 1
    inside = (run >= 0) & (points < ze[np.maximum(run, 0)])
    p = points[inside]
    starts = np.sort(np.concatenate((zs, p + 1)))
    ends = np.sort(np.concatenate((ze, p)))
    keep = ends > starts
    return starts[keep], ends[keep]
