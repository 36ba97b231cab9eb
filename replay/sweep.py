"""A sweep: the cross product of traces, scenarios, cost functions and policy variants, one *cell*
(one simulated migration) per combination, and the function that runs one cell.

This module knows nothing of Dask: `run_cell` is a plain function of a mapped trace and a cell, so
`calm sweep` ships it to Dask workers (`calm.replay.sweep_cluster`) and a notebook or a benchmark
can call it in a loop. A cell goes through the public `run_replay` with one scenario and one
policy, so a sweep replays exactly what `calm replay` would, whatever the simulator becomes.

Policy options take lists (`--qemu-max-bandwidth 50Mbit,100Mbit`): each policy runs once per
combination of *its own* listed options (`SWEEP_OPTIONS`), so CALM is not repeated for every QEMU
setting. A cell that cannot run (a RAM smaller than the trace's footprint, an option above the
scenario's link, a trace that cannot be read) gives a row whose `error` says why; the others run.
"""

from __future__ import annotations

import itertools
import json
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from calm.core.errors import CalmError
from calm.replay.cost import CostFunction
from calm.replay.outputs import json_ready
from calm.replay.runner import PolicyOptions, run_replay
from calm.replay.scenario import Scenario
from calm.replay.trace_map import MappedTrace
from calm.replay.sweep_options import SWEEP_OPTIONS

# What a cell reports, as `ReplayReport.table()` names it.
RESULT_COLUMNS = ("cost_s", "total_time_s", "downtime_s", "precopy_time_s", "pages_sent", "rounds",
                  "forced", "stop_reason")


@dataclass(frozen=True)
class Variant:
    """A policy with the values of its sweep options that the user set (others: the defaults)."""

    algorithm: str
    settings: tuple[tuple[str, float | int], ...] = ()  # (PolicyOptions field, value)

    def options(self) -> PolicyOptions:
        return replace(PolicyOptions(), **dict(self.settings))

    @property
    def label(self) -> str:
        """`qemu max-bandwidth=50Mbit`: the policy and what sets this variant apart."""
        if not self.settings:
            return self.algorithm
        parts = []
        for name, value in self.settings:
            option = next(o for o in SWEEP_OPTIONS if o.field == name)
            parts.append(f"{option.flag.removeprefix('--' + self.algorithm + '-')}={option.show(value)}")
        return f"{self.algorithm} {' '.join(parts)}"


def variants(algorithms: Sequence[str], grid: dict[str, list]) -> list[Variant]:
    """Each algorithm once per combination of its own listed options (`grid`: field -> values)."""
    out = []
    for algorithm in algorithms:
        fields = [o.field for o in SWEEP_OPTIONS if o.algorithm == algorithm and grid.get(o.field)]
        for combo in itertools.product(*(grid[f] for f in fields)):
            out.append(Variant(algorithm, tuple(zip(fields, combo))))
    return out


@dataclass(frozen=True)
class ReplaySettings:
    """What every cell of a sweep shares (`calm replay`'s single-valued options)."""

    extend: str = "loop"
    seed: int = 0
    max_time_s: float | None = None
    skip_seconds: float = 0.0  # applied when the trace is mapped (once per trace)


@dataclass(frozen=True)
class Cell:
    index: int  # position in the table
    trace: str
    scenario: Scenario
    cost: CostFunction
    variant: Variant


@dataclass
class SweepPlan:
    traces: list[str]
    scenarios: list[Scenario]
    costs: list[CostFunction]
    variants: list[Variant]
    settings: ReplaySettings = field(default_factory=ReplaySettings)

    def cells(self) -> list[Cell]:
        """The cross product, in table order: trace, scenario, cost, policy variant."""
        combos = itertools.product(self.traces, self.scenarios, self.costs, self.variants)
        return [Cell(i, t, s, c, v) for i, (t, s, c, v) in enumerate(combos)]

    def describe(self) -> dict:
        return {"traces": self.traces, "scenarios": [s.name for s in self.scenarios],
                "costs": [c.describe() for c in self.costs], "policies": [v.label for v in self.variants],
                "extend": self.settings.extend, "seed": self.settings.seed,
                "max_time_s": self.settings.max_time_s, "skip_seconds": self.settings.skip_seconds}


def _error_text(exc: BaseException) -> str:
    """A CalmError is the user's input (its message says what to change); anything else is a bug
    in calm, named with where it happened so that it can be reported."""
    if isinstance(exc, CalmError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"internal error {type(exc).__name__}: {exc}{where}"


def error_result(message: str) -> dict:
    return {**dict.fromkeys(RESULT_COLUMNS), "page_size": None, "settings": None, "error": message,
            "elapsed_s": None}


def run_cell(mapped: MappedTrace, cell: Cell, settings: ReplaySettings) -> dict:
    """Simulates one cell; returns its result columns (`error` empty on success), never raises
    for a cell that cannot run, so one bad combination does not stop a sweep."""
    t0 = time.perf_counter()
    try:
        report = run_replay(mapped, [cell.scenario], [cell.variant.algorithm], cell.cost,
                            extend=settings.extend, seed=settings.seed, options=cell.variant.options(),
                            max_time_s=settings.max_time_s)
        row = report.table()[0]
        sim = report.scenarios[0].results[0]
        result = {k: row[k] for k in RESULT_COLUMNS}
        result["page_size"] = report.page_size
        result["settings"] = json.dumps(json_ready(sim.options), sort_keys=True)
        result["error"] = ""
    except Exception as exc:  # noqa: BLE001 (see _error_text: reported in the row, not lost)
        result = error_result(_error_text(exc))
    result["elapsed_s"] = time.perf_counter() - t0
    return result


def cell_row(cell: Cell, result: dict) -> dict:
    """One row of the tidy table: what the cell is, then what it gave."""
    options = dict(cell.variant.settings)
    return {"trace": cell.trace, "scenario": cell.scenario.name, "ram_bytes": cell.scenario.ram_bytes,
            "bandwidth_bps": cell.scenario.bandwidth_bps, "cost": cell.cost.spec,
            "algorithm": cell.variant.algorithm, "policy": cell.variant.label,
            **{o.field: options.get(o.field) for o in SWEEP_OPTIONS}, **result}
