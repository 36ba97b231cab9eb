"""Cost functions F(Bs): the probability that a request violates its SLA when the service has
bandwidth Bs (docs/model.md, section 1).

Every F here takes the service bandwidth in **bit/s** (physical units, so one F serves every
scenario); `in_pages()` adapts it to the simulator's pages-per-step. Two sources:

- `MM1Cost`: an M/M/1 queue served at mu = Bs / S requests/s (S = mean response size in bytes),
  arrivals at lambda/s. Its response time is exponential with rate mu - lambda, so
  F = P(response > SLA) = exp(-(mu - lambda) * SLA) when mu > lambda, else 1.
- `TableCost`: measured (bandwidth, probability) points from a CSV, linearly interpolated. The
  model requires F non-increasing with F(0) = 1, so the table is validated (probabilities in
  [0, 1], non-increasing with bandwidth) rather than silently repaired; (0, 1) is prepended when
  the table has no point at zero, and F stays at the last probability beyond the last point.

Specs on the command line: `mm1:rate=12,size=1MiB,sla=1s` or `csv:PATH` (or just `PATH.csv`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calm.core.errors import CalmError
from calm.replay.defaults import DEFAULT_COST_SPEC  # noqa: F401 (part of this module's API)
from calm.replay.scenario import pages_to_rate
from calm.core.units import format_size, parse_duration, parse_rate, parse_size

# Illustrative default (not the slides' Nutch measurement, which is lost): 12 requests/s of 1 MiB
# each need ~100 Mbit/s, with a 1 s SLA. It makes migration expensive on 256 Mbit links and cheap
# on 1 Gbit links, the regime of the slides' table.

PagesCost = Callable[[np.ndarray], np.ndarray]


class CostFunction:
    """F(service bandwidth in bit/s) -> violation probability in [0, 1], non-increasing."""

    spec: str

    def __call__(self, bs_bps: np.ndarray | float) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-ready description (for results.json)."""
        raise NotImplementedError


@dataclass(frozen=True)
class MM1Cost(CostFunction):
    """M/M/1 violation probability; rate in requests/s, size in bytes, sla in seconds."""

    rate: float
    size_bytes: float
    sla_s: float

    @property
    def spec(self) -> str:  # type: ignore[override]
        return f"mm1:rate={self.rate:g},size={format_size(self.size_bytes)},sla={self.sla_s:g}s"

    def __call__(self, bs_bps):
        mu = np.asarray(bs_bps, dtype=float) / 8.0 / self.size_bytes
        slack = mu - self.rate
        return np.where(slack > 0, np.exp(-np.maximum(slack, 0.0) * self.sla_s), 1.0)

    def describe(self) -> dict:
        return {"kind": "mm1", "spec": self.spec, "rate_per_s": self.rate,
                "size_bytes": self.size_bytes, "sla_s": self.sla_s}


@dataclass(frozen=True)
class TableCost(CostFunction):
    """Measured points, interpolated linearly; bandwidths in bit/s, strictly increasing."""

    bandwidth_bps: np.ndarray
    probability: np.ndarray
    source: str = ""

    @property
    def spec(self) -> str:  # type: ignore[override]
        return f"csv:{self.source}"

    def __call__(self, bs_bps):
        return np.interp(np.asarray(bs_bps, dtype=float), self.bandwidth_bps, self.probability)

    def describe(self) -> dict:
        return {"kind": "table", "spec": self.spec, "bandwidth_bps": self.bandwidth_bps.tolist(),
                "probability": self.probability.tolist()}


def table_cost(bandwidth_bps, probability, source: str = "") -> TableCost:
    """Validates measured points (see module docstring) and builds the interpolating F."""
    bw = np.asarray(bandwidth_bps, dtype=float)
    pr = np.asarray(probability, dtype=float)
    where = f" in {source}" if source else ""
    if bw.size < 1:
        raise CalmError(f"cost table{where} has no points")
    if np.any(~np.isfinite(pr)) or np.any((pr < 0) | (pr > 1)):
        raise CalmError(f"cost table{where}: probabilities must be within [0, 1]")
    order = np.argsort(bw, kind="stable")
    bw, pr = bw[order], pr[order]
    if np.any(np.diff(bw) == 0):
        raise CalmError(f"cost table{where}: bandwidth {bw[np.flatnonzero(np.diff(bw) == 0)[0]]:g} bit/s appears twice")
    if np.any(np.diff(pr) > 0):
        i = int(np.flatnonzero(np.diff(pr) > 0)[0])
        raise CalmError(f"cost table{where}: violation probability rises from {pr[i]:g} to {pr[i + 1]:g} "
                        f"between {bw[i]:g} and {bw[i + 1]:g} bit/s; F must be non-increasing")
    if bw[0] > 0:  # F(0) = 1 by definition: no bandwidth, no service
        bw, pr = np.concatenate(([0.0], bw)), np.concatenate(([1.0], pr))
    return TableCost(bw, pr, source)


def load_cost_csv(path: str | Path) -> TableCost:
    """Reads `bandwidth,probability` rows (header optional); bandwidth cells carry units (`100Mbit`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CalmError(f"cannot read cost table {path}: {exc.strerror or exc}") from exc
    bws, probs = [], []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not cells or all(not c for c in cells) or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower().startswith("bandwidth"):
            continue
        if len(cells) != 2:
            raise CalmError(f"{path}:{lineno}: expected 2 columns 'bandwidth,probability', got {len(cells)}")
        try:
            bw = parse_rate(cells[0], "bandwidth", allow_zero=True)
        except CalmError as exc:
            raise CalmError(f"{path}:{lineno}: {exc}") from None
        try:
            prob = float(cells[1])
        except ValueError:
            raise CalmError(f"{path}:{lineno}: probability '{cells[1]}' is not a number") from None
        bws.append(bw)
        probs.append(prob)
    return table_cost(bws, probs, str(path))


def parse_cost(spec: str) -> CostFunction:
    """`mm1:rate=12,size=1MiB,sla=1s`, `csv:PATH` or `PATH.csv` -> a CostFunction."""
    spec = str(spec).strip()
    if spec.startswith("csv:"):
        return load_cost_csv(spec[4:])
    if spec.endswith(".csv"):
        return load_cost_csv(spec)
    if spec.startswith("mm1:"):
        fields = {}
        for part in spec[4:].split(","):
            key, eq, value = part.partition("=")
            if not eq or key.strip() not in ("rate", "size", "sla"):
                raise CalmError(f"cannot parse cost '{spec}': expected mm1:rate=REQ_PER_S,size=SIZE,sla=DURATION")
            fields[key.strip()] = value.strip()
        missing = {"rate", "size", "sla"} - fields.keys()
        if missing:
            raise CalmError(f"cost '{spec}' lacks {', '.join(sorted(missing))}")
        try:
            rate = float(fields["rate"].removesuffix("/s"))
        except ValueError:
            raise CalmError(f"cost '{spec}': rate '{fields['rate']}' is not a number of requests per second") from None
        if not rate > 0:
            raise CalmError(f"cost '{spec}': rate must be positive")
        return MM1Cost(rate, float(parse_size(fields["size"], "response size")),
                       parse_duration(fields["sla"], "SLA"))
    raise CalmError(f"unknown cost '{spec}': use mm1:rate=...,size=...,sla=... or csv:PATH")


def in_pages(cost: CostFunction, page_size: int, step_seconds: float) -> PagesCost:
    """F as a function of the service bandwidth in pages per step (the simulator's units)."""
    def f(bs_pages):
        return cost(pages_to_rate(np.maximum(np.asarray(bs_pages, dtype=float), 0.0), page_size, step_seconds))
    return f
