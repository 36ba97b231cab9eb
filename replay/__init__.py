"""Replay: the CALM cost model, its baselines and trace-driven migration simulation.

Public API (for notebooks, `calm report` and `calm demo`), loaded lazily so that `calm --help`
does not pay for numpy/h5py:

- `run_replay(trace_or_None, scenarios, algorithms, cost, uniform_p=...)` -> `ReplayReport`
  (`.table()`, `.to_dict()` = results.json)
- `simulate(source, policy, bandwidth_pages_per_step, cost_in_pages)` -> `SimResult`
- `map_trace(path)`, `TraceSource`, `UniformSource`: workloads for `simulate`
- `Calm`, `Clark`, `Xen`, `Qemu`, `Fixed`: policies
- `parse_scenario`, `parse_cost`, `in_pages` (units: `calm.core.units`)
- `calm.replay.model`: the uniform analytic model (`optimal_fixed`, `calm_plan`, `fixed_cost_curve`...)

Units: see `calm.replay.scenario` (pages, steps, bit/s) and `calm.replay.simulator` (what a step is).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run_replay": "calm.replay.runner", "ReplayReport": "calm.replay.runner", "PolicyOptions": "calm.replay.runner",
    "ALGORITHMS": "calm.replay.runner", "simulate": "calm.replay.simulator", "SimResult": "calm.replay.simulator",
    "map_trace": "calm.replay.trace_map", "MappedTrace": "calm.replay.trace_map", "TraceSource": "calm.replay.dirty",
    "UniformSource": "calm.replay.dirty", "Calm": "calm.replay.policies", "Clark": "calm.replay.policies",
    "Xen": "calm.replay.policies", "Qemu": "calm.replay.policies", "Fixed": "calm.replay.policies",
    "Policy": "calm.replay.policies", "parse_scenario": "calm.replay.scenario", "Scenario": "calm.replay.scenario",
    "SLIDE_SCENARIOS": "calm.replay.scenario", "parse_cost": "calm.replay.cost", "in_pages": "calm.replay.cost"
}

__all__ = sorted(_EXPORTS) + ["model"]


def __getattr__(name: str):
    if name == "model":
        return importlib.import_module("calm.replay.model")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'calm.replay' has no attribute {name!r}")
