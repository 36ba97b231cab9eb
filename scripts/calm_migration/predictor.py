"""QEMU's own migration-time predictor, applied to what QEMU's calc-dirty-rate measures: the
method of scripts/predict_migration.py (Andrei Gudkov's "Migration time prediction using
calc-dirty-rate" series for QEMU, 2023), re-stated here so both predictors face the same real
migrations.

The method: a curve "pages dirtied t ms after a clean start", piecewise linear through measured
points, extended to the left to t=0 on the slope of the first two points (clamped at 0) and to the
right on the slope of the last two until it saturates at the non-zero pages; then passes are
iterated: the first sends every normal page in full and every zero page as an 8-byte header, each
later pass sends the pages the curve says were dirtied during the previous pass, at the given
bandwidth; the migration ends with the first pass that takes no longer than the downtime limit
(that pass is the stop-and-copy), or is declared non-converging past a deadline.

What the data are: the series' calc-dirty-rate returned a per-period histogram; the QEMU here
(7.2, and 10.0 alike) returns one dirty rate per run of `calc-time` seconds (page sampling: a
sample of pages hashed at the start and at the end). Each run at calc-time T gives one point,
(T, rate * T); runs at several T give the curve, as the issue asks. QEMU 7.2/10.0 do not report
zero pages either; the series' n-zero-pages was counted over the sampled pages, so the harness
counts zero pages over a sample of the guest's RAM the same way (see `sample_zero_fraction`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

PAGE_SIZE = 4096
HEADER_BYTES = 8  # what predict_migration.py charges per page, zero or not


@dataclass
class Curve:
    """Dirty pages after t ms, piecewise linear (predict_migration.py's MemoryModel)."""

    millis: list[float]
    pages: list[float]

    def __call__(self, t_ms: float) -> float:
        for i, at in enumerate(self.millis):
            if at == t_ms:
                return self.pages[i]
            if at > t_ms:
                slope = (self.pages[i] - self.pages[i - 1]) / (at - self.millis[i - 1])
                return self.pages[i - 1] + slope * (t_ms - self.millis[i - 1])
        return self.pages[-1]


def build_curve(points: list[tuple[float, float]], total_pages: int, zero_pages: float) -> Curve:
    """The curve through measured (calc-time s, dirty pages) points, extended as the method does."""
    if len(points) < 2:
        raise ValueError("the predictor needs calc-dirty-rate at two calc-times at least")
    pts = sorted((t * 1000.0, n) for t, n in points)
    if len({t for t, _ in pts}) != len(pts):
        raise ValueError(f"two calc-dirty-rate points share a calc-time: {points}")

    def line(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        slope = (b[1] - a[1]) / (b[0] - a[0])
        return slope, a[1] - slope * a[0]

    _, offset = line(pts[0], pts[1])
    millis, pages = [0.0] + [p[0] for p in pts], [max(offset, 0.0)] + [p[1] for p in pts]
    slope, offset = line(pts[-2], pts[-1])
    saturated = total_pages - zero_pages
    if slope > 0:
        millis.append((saturated - offset) / slope)
        pages.append(saturated)
    millis.append(math.inf)
    pages.append(saturated)
    return Curve(millis, pages)


@dataclass
class Prediction:
    converges: bool
    total_time_s: float
    downtime_s: float  # the last pass's time (the method's stop-and-copy, at the same bandwidth)
    bytes: float
    passes: int  # including the stop-and-copy
    syncs: int  # QEMU's dirty-sync-count for that many passes: setup + one per pass

    def as_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def predict(curve: Curve, total_pages: int, zero_pages: float, bandwidth_bytes_s: float,
            downtime_ms: float, deadline_s: float) -> Prediction:
    """predict_migration.py's predict_migration_time, also returning the bytes and passes."""
    zero, normal = zero_pages, total_pages - zero_pages
    total_ms, sent, passes = 0.0, 0.0, 0
    while True:
        pass_bytes = normal * (PAGE_SIZE + HEADER_BYTES) + zero * HEADER_BYTES
        pass_ms = pass_bytes * 1000.0 / bandwidth_bytes_s
        total_ms += pass_ms
        sent += pass_bytes
        passes += 1
        if pass_ms <= downtime_ms:
            return Prediction(True, total_ms / 1000, pass_ms / 1000, sent, passes, passes + 1)
        if total_ms > deadline_s * 1000:
            return Prediction(False, total_ms / 1000, math.nan, sent, passes, passes + 1)
        zero, normal = 0.0, curve(pass_ms)


def dirty_points(rates: list[tuple[float, int]]) -> list[tuple[float, float]]:
    """(calc-time s, dirty pages) from calc-dirty-rate's (calc-time, MB/s) results."""
    return [(t, rate * t * (1 << 20) / PAGE_SIZE) for t, rate in rates]


def sample_zero_fraction(pid: int, start: int, length: int, samples: int, seed: int = 0) -> float:
    """Share of zero pages among `samples` random pages of [start, start+length) in process `pid`
    (QEMU's guest RAM mapping), read through /proc/PID/mem. A page the host never allocated is
    zero and is counted without being read (a read would allocate it)."""
    rng = np.random.default_rng(seed)
    n_pages = length // PAGE_SIZE
    chosen = np.sort(rng.choice(n_pages, size=min(samples, n_pages), replace=False))
    zero = 0
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pagemap, \
            open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for page in chosen.tolist():
            address = start + page * PAGE_SIZE
            entry = int.from_bytes(os.pread(pagemap.fileno(), 8, address // PAGE_SIZE * 8), "little")
            if not entry & (3 << 62):  # neither present nor swapped: never written
                zero += 1
            elif not any(os.pread(mem.fileno(), PAGE_SIZE, address)):
                zero += 1
    return zero / chosen.size
