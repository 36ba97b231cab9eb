"""What a simulated migration returns (`SimResult`), and the per-step series it carries."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SimResult:
    """One simulated migration. Times in seconds, cost in seconds of violated SLA."""

    algorithm: str
    cost: float
    precopy_cost: float
    total_time: float
    precopy_time: float
    downtime: float
    pages_sent: int  # pre-copy + stop-and-copy
    final_pages: int  # sent during the downtime
    rounds: int  # passes (rounds) begun
    stop_reason: str
    forced: bool  # stopped by the time limit, not by the policy
    options: dict = field(default_factory=dict)
    bytes_sent: float = 0.0  # on the wire, by the policy's wire format (QEMU: ram.transferred)
    zero_pages: int = 0  # pages sent that held only zeros (QEMU: ram.duplicate)
    normal_pages: int = 0  # the other pages sent (QEMU: ram.normal)
    syncs: int = 0  # dirty-bitmap syncs: one to start, one per pass after the first, one for the copy phase
    # Per-step series (one entry per pre-copy step).
    time: np.ndarray = field(default_factory=lambda: np.empty(0))  # step start, s
    rate_bps: np.ndarray = field(default_factory=lambda: np.empty(0))  # migration rate asked, bit/s
    sent: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # pages sent
    dirty: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # dirty pages after the step
    cost_so_far: np.ndarray = field(default_factory=lambda: np.empty(0))  # cumulative pre-copy cost, s

    def summary(self) -> dict:
        return {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in self.__dict__.items()
                if not isinstance(v, np.ndarray)}

    def to_dict(self, max_points: int = 5000) -> dict:
        """JSON-ready; series thinned to at most `max_points` evenly spaced steps."""
        n = len(self.time)
        idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).astype(np.int64)) if n else np.empty(0, np.int64)
        return {**self.summary(), "series": {
            "time_s": self.time[idx].tolist(), "bandwidth_bps": self.rate_bps[idx].tolist(),
            "sent_pages": self.sent[idx].tolist(), "dirty_pages": self.dirty[idx].tolist(),
            "cost_so_far": self.cost_so_far[idx].tolist()}}


class StepSeries:
    """Per-step series: Python lists for single steps, arrays for strides, joined at the end."""

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, ...]] = []
        self.lists: tuple[list, ...] = ([], [], [], [], [])

    def add(self, t, rate, sent, dirty, cost) -> None:
        for lst, v in zip(self.lists, (t, rate, sent, dirty, cost)):
            lst.append(v)

    def add_arrays(self, *arrays: np.ndarray) -> None:
        self._flush()
        self.chunks.append(arrays)

    def _flush(self) -> None:
        if self.lists[0]:
            self.chunks.append(tuple(np.asarray(lst) for lst in self.lists))
            self.lists = ([], [], [], [], [])

    def arrays(self) -> list[np.ndarray]:
        self._flush()
        dtypes = (float, float, np.int64, np.int64, float)
        if not self.chunks:
            return [np.empty(0, d) for d in dtypes]
        return [np.concatenate([c[i] for c in self.chunks]).astype(d) for i, d in enumerate(dtypes)]
