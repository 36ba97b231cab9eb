"""Sorts one pagemap batch's pages for the hash backend in a single compiled pass.

Why: a hash round is bounded by the copy of the pages it hashes; everything else is overhead. After
the pagemap read itself (kernel time, ~10% of a 1 GiB round), the largest remaining cost was numpy
decoding the batch: flag bytes, present and swapped masks, a position-to-page search, the split into
shared and private pages, and turning the private pages back into runs for the reader: eight passes
over the entries and several temporaries. One compiled loop over the entries does it all, knowing
each piece's region without a search (BENCHMARKS.md has the before and after).

Outputs per batch (all sorted, in page order):
- private present pages (hashed by the backend), whether each is still a private file page not
  yet copied on write (pagemap bit 61 in a private mapping: it cannot have been written), and the
  same pages as runs of consecutive pages, ready for `PageReader.read_hash_runs`;
- present pages of shared regions (hashed once per round for the service, `shared_hash`);
- swapped private pages (their hash is kept while they are out);
- optionally every resident (present or swapped) page, for the baseline's residency.

Without numba the same outputs come from the vectorised numpy code (`_classify_numpy`); a test
checks that both agree on a real process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calm.collector import procfs
from calm.collector.ranges import runs

_PRESENT = np.uint64(procfs.B7_PRESENT)  # byte 7 flags (bits 63, 62, 61) as the loop compares them
_SWAPPED = np.uint64(procfs.B7_SWAPPED)
_FILE = np.uint64(procfs.B7_FILE)


@dataclass
class PresentPages:
    """One batch's pages sorted by what the hash backend does with them (module docstring)."""

    private: np.ndarray  # uint64 vpns of present private pages
    fresh: np.ndarray  # bool per private page: a private file page not yet copied on write
    run_vpn: np.ndarray  # uint64 first vpn of each run of consecutive private pages
    run_pages: np.ndarray  # int64 pages in each run
    shared: np.ndarray  # uint64 vpns of present pages in shared regions
    swapped: np.ndarray  # uint64 vpns of swapped private pages
    n_resident: int  # present or swapped pages, shared or not
    resident: np.ndarray | None  # their vpns, when asked for


def _classify_loop(entries, first_vpn, offset, region, shared_region, want_resident,
                   private, fresh, run_vpn, run_pages, shared, swapped, resident):
    """Fills the output arrays (each as long as `entries`); returns how many of each it filled.
    Plain Python that numba compiles: one iteration per pagemap entry."""
    n_private = n_runs = n_shared = n_swapped = n_resident = 0
    n_pieces = first_vpn.shape[0]
    for k in range(n_pieces):
        lo = offset[k]
        hi = offset[k + 1] if k + 1 < n_pieces else entries.shape[0]
        in_shared = shared_region[region[k]]
        for i in range(lo, hi):
            flags = entries[i] >> np.uint64(56)
            if flags < _SWAPPED:  # neither present nor swapped
                continue
            vpn = np.uint64(first_vpn[k] + (i - lo))
            if want_resident:
                resident[n_resident] = vpn
            n_resident += 1
            if flags >= _PRESENT:
                if in_shared:
                    shared[n_shared] = vpn
                    n_shared += 1
                    continue
                private[n_private] = vpn
                fresh[n_private] = (flags & _FILE) != 0
                n_private += 1
                if n_runs > 0 and run_vpn[n_runs - 1] + np.uint64(run_pages[n_runs - 1]) == vpn:
                    run_pages[n_runs - 1] += 1
                else:
                    run_vpn[n_runs] = vpn
                    run_pages[n_runs] = 1
                    n_runs += 1
            elif not in_shared:
                swapped[n_swapped] = vpn
                n_swapped += 1
    return n_private, n_runs, n_shared, n_swapped, n_resident


def _classify_compiled(batch: procfs.PagemapBatch, shared_region: np.ndarray,
                       want_resident: bool) -> PresentPages:
    n = batch.entries.size
    private, run_vpn = np.empty(n, np.uint64), np.empty(n, np.uint64)
    fresh, run_pages = np.empty(n, np.bool_), np.empty(n, np.int64)
    shared, swapped = np.empty(n, np.uint64), np.empty(n, np.uint64)
    resident = np.empty(n if want_resident else 0, np.uint64)
    n_private, n_runs, n_shared, n_swapped, n_resident = _loop(
        batch.entries, batch.first_vpn, batch.offset, batch.region, shared_region, want_resident,
        private, fresh, run_vpn, run_pages, shared, swapped, resident)
    # copies: the kept arrays should not pin buffers sized for the whole batch
    return PresentPages(private[:n_private].copy(), fresh[:n_private].copy(), run_vpn[:n_runs].copy(),
                        run_pages[:n_runs].copy(), shared[:n_shared].copy(), swapped[:n_swapped].copy(),
                        n_resident, resident[:n_resident].copy() if want_resident else None)


def _classify_numpy(batch: procfs.PagemapBatch, shared_region: np.ndarray,
                    want_resident: bool) -> PresentPages:
    """The same outputs from vectorised numpy (no numba)."""
    _, b7 = procfs.flag_bytes(batch.entries)
    resident_idx = np.flatnonzero(b7 >= procfs.B7_SWAPPED)
    vpns, regions = batch.locate(resident_idx)
    in_shared = shared_region[regions]
    flags = b7[resident_idx]
    present = flags >= procfs.B7_PRESENT
    mine = present & ~in_shared
    private = vpns[mine]
    return PresentPages(private, (flags[mine] & procfs.B7_FILE) != 0, *runs(private), vpns[present & in_shared], vpns[~present & ~in_shared], int(resident_idx.size),
                        vpns if want_resident else None)


_loop = None
IMPLEMENTATION = ""


def implementation() -> str:
    """'numba X.Y' or 'numpy': what sorts the pages (compiles the loop on first use)."""
    _ensure_compiled()
    return IMPLEMENTATION


def classify(batch: procfs.PagemapBatch, shared_region: np.ndarray, want_resident: bool = False) -> PresentPages:
    """Sorts `batch`'s pages (module docstring); `shared_region[r]` says whether scanned region r
    is a shared mapping."""
    _ensure_compiled()
    if _loop is None:
        return _classify_numpy(batch, shared_region, want_resident)
    return _classify_compiled(batch, shared_region, want_resident)


def _ensure_compiled() -> None:
    """Compiles the loop (or loads numba's cache) on first use, and runs it once on a tiny batch
    so a numba that cannot compile here falls back to numpy before any round depends on it."""
    global _loop, IMPLEMENTATION
    if IMPLEMENTATION:
        return
    try:
        import numba

        _loop = numba.njit(nogil=True, cache=True, boundscheck=False)(_classify_loop)
        probe = procfs.PagemapBatch(np.array([1 << 63, 0], np.uint64), np.array([5], np.int64),
                                    np.array([0], np.int64), np.array([0], np.int64))
        found = _classify_compiled(probe, np.array([False]), True)
        if found.private.tolist() != [5] or found.n_resident != 1:
            raise RuntimeError("compiled classification disagrees with its probe")
        IMPLEMENTATION = f"numba {numba.__version__}"
    except Exception:  # no numba, or one that cannot compile here: numpy gives the same result
        _loop, IMPLEMENTATION = None, "numpy"
