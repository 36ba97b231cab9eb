"""Where the pages a workload writes sit in the RAM being migrated, and which pages are zero.

Why a layout instead of one entry per RAM page: a 1 TiB guest has 268 M pages, but a trace
writes only its *footprint*, the F pages it ever dirties (tens of thousands to a few million).
The simulator keeps state per footprint page only; every other page ("cold") is never written,
so pre-copy copies it once, in its first pass, and it stays clean. What the simulator still
needs about cold pages is how many lie between two RAM positions (the first pass sends in RAM
order) and how many of them hold only zeros (QEMU sends a zero page as a header): both are
answered from the footprint positions and a sorted list of zero runs, in O(log) per query.

Three layouts:
- `spread(F, M)`: the footprint spread evenly over a hypothetical RAM of M pages, footprint page
  j at RAM page floor(j M / F) (a trace replayed at `RAM@RATE`); no page is known to be zero.
- `identity(M)`: every RAM page can be written (the uniform synthetic workload); F = M.
- `RamLayout(...)` built by `replay.own_memory` for `trace@RATE`: the recorded regions are the
  RAM, each page at its own offset, and the trace says which pages were zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RamLayout:
    """Footprint positions in a RAM of `n_pages`, and the pages that hold only zeros at the start."""

    n_pages: int  # M
    position: np.ndarray  # int64[F], RAM page of footprint page j, strictly increasing in j
    zero_start: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # runs of zero pages:
    zero_end: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # [start, end), sorted, disjoint
    kind: str = "spread"

    def __post_init__(self) -> None:
        self.position = np.asarray(self.position, dtype=np.int64)
        self.zero_start = np.asarray(self.zero_start, dtype=np.int64)
        self.zero_end = np.asarray(self.zero_end, dtype=np.int64)
        # zero pages below each run's start, for zero_below()
        self._zero_before = np.concatenate(([0], np.cumsum(self.zero_end - self.zero_start)))
        self.n_zero = int(self._zero_before[-1])
        self._fp_zero: np.ndarray | None = None
        self._fp_zero_before: np.ndarray | None = None

    @property
    def footprint_zero(self) -> np.ndarray:
        """bool[F]: footprint pages that hold only zeros at the start (computed when first asked:
        without zero runs a layout holds nothing per page but the positions)."""
        if self._fp_zero is None:
            self._fp_zero = self._in_zero_runs(self.position)
            self._fp_zero_before = np.concatenate(([0], np.cumsum(self._fp_zero, dtype=np.int64)))
        return self._fp_zero

    @property
    def footprint(self) -> int:
        return int(self.position.size)

    @property
    def n_cold(self) -> int:
        return self.n_pages - self.footprint

    @property
    def has_zero_pages(self) -> bool:
        return self.n_zero > 0

    def _in_zero_runs(self, pos: np.ndarray) -> np.ndarray:
        if self.zero_start.size == 0:
            return np.zeros(pos.shape, dtype=bool)
        run = np.searchsorted(self.zero_start, pos, side="right") - 1
        ok = run >= 0
        out = np.zeros(pos.shape, dtype=bool)
        out[ok] = pos[ok] < self.zero_end[run[ok]]
        return out

    def zero_below(self, x):
        """Zero pages (footprint or cold) at RAM positions < x (x scalar or array)."""
        x = np.asarray(x, dtype=np.int64)
        if self.zero_start.size == 0:
            return np.zeros(x.shape, dtype=np.int64) if x.ndim else 0
        run = np.searchsorted(self.zero_start, x, side="right") - 1  # the last run starting at or below x
        run_c = np.maximum(run, 0)
        inside = np.minimum(x, self.zero_end[run_c]) - self.zero_start[run_c]
        out = np.where(run >= 0, self._zero_before[run_c] + np.maximum(inside, 0), 0)
        return out if x.ndim else int(out)

    def footprint_below(self, x):
        """Footprint pages at RAM positions < x."""
        return np.searchsorted(self.position, x, side="left")

    def cold_zero_between(self, a: int, b: int) -> int:
        """Cold (never written) zero pages at positions [a, b)."""
        if not self.n_zero or b <= a:
            return 0
        ja, jb = int(self.footprint_below(a)), int(self.footprint_below(b))
        self.footprint_zero  # noqa: B018 (fills _fp_zero_before)
        fp_zero = int(self._fp_zero_before[jb] - self._fp_zero_before[ja])
        return int(self.zero_below(b) - self.zero_below(a)) - fp_zero

    def describe(self) -> dict:
        return {"layout": self.kind, "n_pages": self.n_pages, "footprint_pages": self.footprint,
                "zero_pages_at_start": self.n_zero}


def spread(footprint: int, n_pages: int) -> RamLayout:
    """Footprint page j at RAM page floor(j M / F): spread evenly, order kept."""
    pos = (np.arange(footprint, dtype=np.int64) * n_pages) // max(footprint, 1)
    return RamLayout(n_pages, pos, kind="spread")


def identity(n_pages: int) -> RamLayout:
    """Every RAM page may be written (uniform workload): footprint page j is RAM page j."""
    return RamLayout(n_pages, np.arange(n_pages, dtype=np.int64), kind="identity")
