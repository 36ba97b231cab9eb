"""QEMU migration times against link bandwidth and downtime limit, by replaying a trace
(`calm predict`): the table QEMU's `scripts/predict_migration.py` prints, computed with the
simulator instead of an extrapolated dirty-pages-after-t curve.

Each cell replays the trace on its own memory (`trace@RATE`, `replay.own_memory`) through the
QEMU policy (`replay.policies.qemu`) with the link and max-bandwidth both at the row's rate (the
bandwidth available to the migration, as predict_migration.py assumes) and downtime-limit at the
column's; "unlimited" switches over as soon as QEMU has measured its bandwidth. A cell whose
pre-copy the simulator had to cut (`forced`: still not done after the time limit, by default the
first pass plus 10 loops of the trace) is "does not converge": with a fixed rate over a looped
trace, a pre-copy that has not converged by then never will.

The defaults are predict_migration.py's rows and columns; its rates are binary (its "1 Gbps" is
2^30 bit/s), calm's are decimal (1 Gbit/s = 10^9 bit/s), like every other rate calm prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from calm.core.units import format_rate
from calm.replay.cost import in_pages, parse_cost
from calm.replay.defaults import DEFAULT_COST_SPEC
from calm.replay.dirty import TraceSource
from calm.replay.policies.qemu import Qemu
from calm.replay.scenario import rate_to_pages
from calm.replay.simulator import simulate
from calm.replay.trace_map import MappedTrace

DEFAULT_BANDWIDTHS_BPS = (100e6, 1e9, 2e9, 2.5e9, 5e9, 10e9, 25e9, 40e9)
DEFAULT_DOWNTIMES_S = (0.125, 0.25, 0.5, 1.0, 5.0, math.inf)


@dataclass
class Cell:
    bandwidth_bps: float
    downtime_limit_s: float  # inf: unlimited
    converges: bool
    total_time_s: float
    downtime_s: float
    bytes_sent: float
    normal_pages: int
    zero_pages: int
    syncs: int
    stop_reason: str

    def to_dict(self) -> dict:
        return {**self.__dict__, "downtime_limit_s": None if math.isinf(self.downtime_limit_s)
                else self.downtime_limit_s}


def predict(mapped: MappedTrace, bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS_BPS,
            downtimes: Sequence[float] = DEFAULT_DOWNTIMES_S, max_bandwidth_bps: float | None = None,
            max_time_s: float | None = None, progress: Callable[[str], None] | None = None) -> list[Cell]:
    """One Cell per (bandwidth, downtime limit), rows first."""
    source = TraceSource(mapped, None)  # the layout is built once and shared by every cell
    cost = in_pages(parse_cost(DEFAULT_COST_SPEC), mapped.page_size, mapped.step_seconds)  # unused by QEMU
    max_steps = None if max_time_s is None else max(1, math.ceil(max_time_s / mapped.step_seconds))
    cells = []
    for bw in bandwidths:
        link = rate_to_pages(bw, mapped.page_size, mapped.step_seconds)
        for limit in downtimes:
            label = f"{format_rate(bw)}, downtime-limit {_limit(limit)}"
            if progress:
                progress(label)
            policy = Qemu(bw if max_bandwidth_bps is None else max_bandwidth_bps, limit)
            r = simulate(source, policy, link, cost, max_steps,
                         progress=(lambda msg, label=label: progress(f"{label}: {msg}")) if progress else None)
            cells.append(Cell(bw, limit, not r.forced, r.total_time, r.downtime, r.bytes_sent, r.normal_pages,
                              r.zero_pages, r.syncs, r.stop_reason))
    return cells


def _limit(seconds: float) -> str:
    if math.isinf(seconds):
        return "unlim"
    return f"{seconds * 1000:g}ms" if seconds < 10 else f"{seconds:g}s"


def eta(seconds: float) -> str:
    """predict_migration.py's spelling of a time from a minute on (1m55s, 16m45s), and three
    significant digits below (its whole seconds hide everything on a small guest)."""
    if seconds < 59.5:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def format_grid(cells: list[Cell], value: Callable[[Cell], str], corner: str) -> str:
    """predict_migration.py's layout: downtime limits across, bandwidths down, '-' where the
    migration does not converge."""
    limits = list(dict.fromkeys(c.downtime_limit_s for c in cells))
    rates = list(dict.fromkeys(c.bandwidth_bps for c in cells))
    by = {(c.bandwidth_bps, c.downtime_limit_s): c for c in cells}
    head = f"{corner:>10} |" + "".join(f" {_limit(t):>8} |" for t in limits)
    lines = [head, "-" * len(head)]
    for bw in rates:
        row = f"{format_rate(bw, ' ') + '/s':>10} |"
        for t in limits:
            c = by[(bw, t)]
            row += f" {value(c) if c.converges else '-':>8} |"
        lines.append(row)
    return "\n".join(lines)


def format_tables(cells: list[Cell]) -> str:
    time_table = format_grid(cells, lambda c: eta(c.total_time_s), "Downtime>")
    down_table = format_grid(cells, lambda c: f"{c.downtime_s * 1000:.0f}ms" if c.downtime_s < 10
                             else eta(c.downtime_s), "Downtime>")
    bytes_table = format_grid(cells, lambda c: _mib(c.bytes_sent), "Downtime>")
    return (f"Total migration time ('-': does not converge)\n{time_table}\n\n"
            f"Downtime (the final copy at the link's rate)\n{down_table}\n\n"
            f"Bytes sent (ram.transferred)\n{bytes_table}")


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f}GiB" if n >= 2**30 else f"{n / 2**20:.1f}MiB"

