"""Streaming accumulators fed one trace chunk at a time.

Why streaming: a trace can hold far more dirty-page events than memory. Each accumulator keeps
state proportional to the distinct pages (or to a small fixed grid), never to pages x samples, and
does its per-chunk work with whole-array numpy operations.
"""

from __future__ import annotations

import numpy as np


def sorted_unique(values: np.ndarray, return_counts: bool = False):
    """np.unique by sorting: numpy 2.x's default hash-based unique is ~50x slower on large
    uint64 arrays, and trace chunks arrive as sorted runs (one per sample) that sort quickly."""
    ordered = np.sort(values)
    first = np.empty(ordered.size, dtype=bool)
    if ordered.size:
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    unique = ordered[first]
    if not return_counts:
        return unique
    starts = np.flatnonzero(first)
    return unique, np.diff(np.append(starts, ordered.size))


class DirtyCounter:
    """Number of samples in which each distinct page key was dirty.

    `keys` stays sorted, so merging a chunk is one `np.unique` of the chunk, one `searchsorted`,
    and an `np.insert` of the keys not seen before: O(chunk log chunk + distinct) per chunk.
    """

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.counts = np.empty(0, dtype=np.int64)

    def add(self, keys: np.ndarray) -> None:
        """Adds one chunk of keys; a key appears at most once per sample, so counts are samples."""
        if keys.size == 0:
            return
        unique, counts = sorted_unique(keys, return_counts=True)
        idx = np.searchsorted(self.keys, unique)
        found = idx < self.keys.size
        found[found] = self.keys[idx[found]] == unique[found]
        self.counts[idx[found]] += counts[found]
        new = ~found
        if new.any():
            self.keys = np.insert(self.keys, idx[new], unique[new])
            self.counts = np.insert(self.counts, idx[new], counts[new].astype(np.int64))

    def index_of(self, keys: np.ndarray) -> np.ndarray:
        """Positions of keys already added (callers pass only keys they added)."""
        return np.searchsorted(self.keys, keys)


class WindowCounter:
    """Distinct pages dirtied in consecutive time windows (the working set of each window).

    Windows are runs of whole samples (`window_of_sample`, non-decreasing). Within a chunk, each
    event's dense page index and its window are packed into one uint64 and made unique with a
    single sort. The last window of a chunk may continue in the next one, so its distinct keys are
    carried over instead of being counted twice.
    """

    def __init__(self, window_of_sample: np.ndarray, n_windows: int) -> None:
        self.window_of_sample = window_of_sample
        self.distinct = np.zeros(n_windows, dtype=np.int64)
        self._carry_window = -1
        self._carry_keys = np.empty(0, dtype=np.uint64)

    def add(self, sample: np.ndarray, index: np.ndarray, counter: DirtyCounter) -> None:
        """Adds one chunk's events given as `index` = positions of their keys in `counter`."""
        window = self.window_of_sample[sample]
        if self._carry_keys.size:
            window = np.concatenate((np.full(self._carry_keys.size, self._carry_window), window))
            index = np.concatenate((counter.index_of(self._carry_keys), index))
        if index.size == 0:
            return
        base = int(window[0])
        packed = ((window - base).astype(np.uint64) << np.uint64(32)) | index.astype(np.uint64)
        unique = sorted_unique(packed)
        unique_window = (unique >> np.uint64(32)).astype(np.int64) + base
        last = int(unique_window[-1])
        closed = unique_window < last
        self.distinct += np.bincount(unique_window[closed], minlength=self.distinct.size)[: self.distinct.size]
        index = (unique[~closed] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        self._carry_window, self._carry_keys = last, counter.keys[index]

    def finish(self) -> np.ndarray:
        if self._carry_keys.size:
            self.distinct[self._carry_window] += self._carry_keys.size
            self._carry_keys = np.empty(0, dtype=np.uint64)
        return self.distinct


class GridCounter:
    """Dirty events binned on a small (rows x time bins) grid, e.g. address x time heatmaps.

    `row_of` maps event keys to a row (or -1 to drop them); time bins are runs of samples.
    """

    def __init__(self, n_rows: int, time_bin_of_sample: np.ndarray, n_time_bins: int) -> None:
        self.grid = np.zeros((n_rows, n_time_bins), dtype=np.int64)
        self.time_bin_of_sample = time_bin_of_sample

    def add(self, sample: np.ndarray, rows: np.ndarray) -> None:
        keep = rows >= 0
        n_rows, n_bins = self.grid.shape
        flat = rows[keep].astype(np.int64) * n_bins + self.time_bin_of_sample[sample[keep]]
        self.grid += np.bincount(flat, minlength=n_rows * n_bins).reshape(n_rows, n_bins)


def even_bins(n_items: int, n_bins: int) -> np.ndarray:
    """Bin index of each of n_items consecutive items split into n_bins nearly equal runs."""
    return (np.arange(n_items, dtype=np.int64) * n_bins) // max(n_items, 1)


def lookup_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in `sorted_keys`, or -1 where it is absent."""
    idx = np.searchsorted(sorted_keys, keys)
    idx_clipped = np.minimum(idx, max(sorted_keys.size - 1, 0))
    hit = (idx < sorted_keys.size) & (sorted_keys[idx_clipped] == keys) if sorted_keys.size else np.zeros(keys.shape, bool)
    return np.where(hit, idx, -1)
