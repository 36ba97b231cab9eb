"""Replay: the CALM cost model, its baselines and trace-driven migration simulation.

Public API (for notebooks, `calm report` and `calm demo`), loaded lazily so that `calm --help`
does not pay for numpy/h5py:

- `run_replay(trace_or_None, scenarios, algorithms, cost, uniform_p=...)` -> `ReplayReport`
  (`.table()`, `.to_dict()` = results.json)
- `simulate(source, policy, bandwidth_pages_per_step, cost_in_pages)` -> `SimResult`
- `map_trace(path)`, `TraceSource`, `UniformSource`: workloads for `simulate`
- `Calm`, `Clark`, `Xen`, `Qemu`, `Fixed`: policies
- `parse_scenario`, `parse_cost`, `in_pages`, `parse_size`, `parse_rate`, `parse_duration`
- `replay.model`: the uniform analytic model (`optimal_fixed`, `calm_plan`, `fixed_cost_curve`...)

Units: see `replay.scenario` (pages, steps, bit/s) and `replay.simulator` (what a step is).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run_replay": "replay.runner", "ReplayReport": "replay.runner", "PolicyOptions": "replay.runner",
    "ALGORITHMS": "replay.runner", "simulate": "replay.simulator", "SimResult": "replay.simulator",
    "map_trace": "replay.trace_map", "MappedTrace": "replay.trace_map", "TraceSource": "replay.dirty",
    "UniformSource": "replay.dirty", "Calm": "replay.policies", "Clark": "replay.policies",
    "Xen": "replay.policies", "Qemu": "replay.policies", "Fixed": "replay.policies",
    "Policy": "replay.policies", "parse_scenario": "replay.scenario", "Scenario": "replay.scenario",
    "SLIDE_SCENARIOS": "replay.scenario", "parse_cost": "replay.cost", "in_pages": "replay.cost",
    "parse_size": "replay.units", "parse_rate": "replay.units", "parse_duration": "replay.units",
}

__all__ = sorted(_EXPORTS) + ["model"]


def __getattr__(name: str):
    if name == "model":
        return importlib.import_module("replay.model")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'replay' has no attribute {name!r}")
