"""Vectorised operations on half-open [start, end) ranges of page numbers or addresses.

Why a module of its own: the PAGEMAP_SCAN path and the analyzer's address layout both need to
merge and expand ranges, and neither should loop over pages in Python.
"""

from __future__ import annotations

import numpy as np


def merge_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of [start, end) ranges, sorted and disjoint; touching ranges are merged."""
    order = np.argsort(starts, kind="stable")
    s, e = np.asarray(starts)[order], np.asarray(ends)[order]
    if s.size == 0:
        return s, e
    reach = np.maximum.accumulate(e)
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], s.size) - 1
    return s[first], reach[last]


def expand_ranges(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[start_i, end_i) ranges -> the concatenated page numbers (uint64), no per-page loop."""
    lengths = (end - start).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.uint64)
    offsets = np.cumsum(lengths) - lengths  # position of each range's first page in the output
    base = np.repeat(start.astype(np.int64) - offsets, lengths)
    return (base + np.arange(total, dtype=np.int64)).astype(np.uint64)


def runs(pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique page numbers -> (first page, int64 length) of each run of consecutive ones."""
    if pages.size == 0:
        return pages[:0], np.empty(0, dtype=np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(pages) != 1) + 1))
    return pages[starts], np.diff(np.append(starts, pages.size)).astype(np.int64)
