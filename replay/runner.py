"""Replays one workload (a trace or a synthetic uniform one) through policies in scenarios.

This is the public entry point for notebooks and for `calm report` / `calm demo`:

    from calm.replay import run_replay, parse_scenario, parse_cost
    report = run_replay("trace.h5", [parse_scenario("1GiB@1Gbit")], ["calm", "clark"])
    report.table()            # rows like the slides' evaluation table
    report.to_dict()          # what results.json holds

A `ReplayReport` is plain data (JSON-serialisable through `to_dict`), so a report can be rebuilt
from results.json without re-running anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from calm.core.version import __version__
from calm.core.errors import CalmError
from calm.replay.charge import Charge, scale_result
from calm.replay.defaults import ALGORITHMS
from calm.replay.cost import DEFAULT_COST_SPEC, CostFunction, in_pages, parse_cost
from calm.replay.dirty import DirtySource, TraceSource, UniformSource
from calm.replay.model import fixed_cost_curve
from calm.replay.policies import POLICIES, Calm, CalmPages, Clark, ClarkAdaptive, Fixed, Policy, Qemu, Xen
from calm.core.units import format_size
from calm.replay.scenario import SLIDE_SCENARIOS, Scenario, check_rate, pages_to_rate, parse_scenario
from calm.replay.simulator import SimResult, simulate
from calm.replay.trace_map import MappedTrace, check_fits, map_trace

UNIFORM_PAGE_SIZE = 4096
IDLE_TAIL_SHARE = 0.1  # an idle tail this share of the trace or longer is worth a note
SERVICE_BANDWIDTH_BPS = 1e9  # the default service scenario's link: the slides' first (1 Gbit/s)


@dataclass
class PolicyOptions:
    """Baseline knobs a user can set (None: the defaults documented on each policy)."""

    clark_min_bps: float | None = None
    clark_max_bps: float | None = None
    clark_increment_bps: float | None = None
    clark_max_rounds: int | None = None
    qemu_max_bandwidth_bps: float | None = None  # None: QEMU's MAX_THROTTLE (128 MiB/s), capped by the link
    qemu_downtime_limit_s: float = 0.3
    qemu_switchover_bandwidth_bps: float | None = None

    def check(self, scenario: Scenario, algorithms: Sequence[str]) -> None:
        """Refuses rates the scenario cannot carry before any simulation runs, so a bad option
        is one error line rather than an error after part of the table was computed."""
        link, where = scenario.bandwidth_bps, f"the bandwidth of scenario {scenario.name}"
        if "clark" in algorithms:
            if self.clark_max_bps is not None:
                check_rate(self.clark_max_bps, link, "Clark's maximum rate", where)
            if self.clark_min_bps is not None:
                check_rate(self.clark_min_bps, min(self.clark_max_bps or link, link), "Clark's minimum rate",
                           f"its maximum in scenario {scenario.name}")
        # QEMU's max-bandwidth may exceed the link: the link caps it, as in a real migration

    def make(self, name: str) -> Policy:
        if name == "calm":
            return Calm()
        if name == "calm-pages":
            return CalmPages()
        if name == "clark":
            return Clark(self.clark_min_bps, self.clark_max_bps, self.clark_increment_bps,
                         max_rounds=self.clark_max_rounds)
        if name == "clark-adaptive":
            return ClarkAdaptive()
        if name == "xen":
            return Xen()
        if name == "qemu":
            return Qemu(self.qemu_max_bandwidth_bps, self.qemu_downtime_limit_s, self.qemu_switchover_bandwidth_bps)
        if name == "fixed":
            return Fixed()
        raise CalmError(f"unknown algorithm '{name}': choose from {', '.join(POLICIES)}")


def parse_algorithms(text: str | Sequence[str]) -> list[str]:
    """'calm,clark' (or a list of such strings) -> validated names, in order, without repeats."""
    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for name in (n.strip().lower() for n in item.split(",")):
            if not name:
                raise CalmError(f"empty algorithm name in '{item}'")
            if name not in POLICIES:
                raise CalmError(f"unknown algorithm '{name}': choose from {', '.join(POLICIES)}")
            if name not in names:
                names.append(name)
    return names


@dataclass
class SweepResult:
    """Cost of fixed-bandwidth migrations against the bandwidth, simulated and analytic."""

    bandwidth_bps: np.ndarray
    simulated_cost: np.ndarray  # seconds; best stop point in hindsight along each run
    analytic_cost: np.ndarray  # seconds; uniform model at the workload's mean p

    def to_dict(self) -> dict:
        return {"bandwidth_bps": self.bandwidth_bps.tolist(), "simulated_cost": self.simulated_cost.tolist(),
                "analytic_cost": self.analytic_cost.tolist()}


@dataclass
class ScenarioResult:
    scenario: Scenario
    n_pages: int
    bandwidth_pages_per_step: float
    mean_p: float
    results: list[SimResult]
    sweep: SweepResult | None = None
    ram_bytes: int = 0  # the RAM replayed (for trace@RATE, the trace's own memory)
    layout: dict = field(default_factory=dict)
    skipped: str = ""  # why no algorithm ran (a RAM smaller than the service's footprint)
    origin: str = ""  # "service": the default scenario sized from the recorded service

    def to_dict(self) -> dict:
        return {"name": self.scenario.name, "ram_bytes": self.ram_bytes, "own_memory": self.scenario.own_memory,
                "layout": self.layout, "bandwidth_bps": self.scenario.bandwidth_bps, "n_pages": self.n_pages,
                "bandwidth_pages_per_step": self.bandwidth_pages_per_step, "mean_p": self.mean_p,
                "results": [r.to_dict() for r in self.results],
                "sweep": self.sweep.to_dict() if self.sweep else None,
                "skipped": self.skipped, "origin": self.origin}


@dataclass
class ReplayReport:
    workload: dict
    cost: dict
    step_seconds: float
    page_size: int
    scenarios: list[ScenarioResult] = field(default_factory=list)

    notes: list[str] = field(default_factory=list)  # what the user should know about this replay

    def table(self) -> list[dict]:
        """One row per (scenario, algorithm): the slides' evaluation table and a bit more. A
        scenario too small for the service has one row saying so (algorithm "-", no figures)."""
        rows = []
        for s in self.scenarios:
            if s.skipped:
                rows.append({"scenario": s.scenario.name, "ram_bytes": s.ram_bytes,
                             "own_memory": s.scenario.own_memory, "bandwidth_bps": s.scenario.bandwidth_bps,
                             "algorithm": "-", "cost_s": None, "total_time_s": None, "downtime_s": None,
                             "precopy_time_s": None, "pages_sent": None, "rounds": None, "forced": False,
                             "stop_reason": s.skipped, "bytes_sent": None, "normal_pages": None,
                             "zero_pages": None, "syncs": None})
            rows += [{"scenario": s.scenario.name, "ram_bytes": s.ram_bytes, "own_memory": s.scenario.own_memory,
                      "bandwidth_bps": s.scenario.bandwidth_bps, "algorithm": r.algorithm, "cost_s": r.cost,
                      "total_time_s": r.total_time, "downtime_s": r.downtime, "precopy_time_s": r.precopy_time,
                      "pages_sent": r.pages_sent, "rounds": r.rounds, "forced": r.forced,
                      "stop_reason": r.stop_reason, "bytes_sent": r.bytes_sent, "normal_pages": r.normal_pages,
                      "zero_pages": r.zero_pages, "syncs": r.syncs} for r in s.results]
        return rows

    def to_dict(self) -> dict:
        return {"tool": "calm replay", "version": __version__, "notes": list(self.notes),
                "workload": self.workload, "cost": self.cost,
                "step_seconds": self.step_seconds, "page_size": self.page_size,
                "units": {"cost": "seconds of violated SLA", "time": "seconds", "bandwidth": "bit/s"},
                "scenarios": [s.to_dict() for s in self.scenarios]}


def _max_steps(max_time_s: float | None, step_seconds: float) -> int | None:
    return None if max_time_s is None else max(1, math.ceil(max_time_s / step_seconds))


def sweep_fixed(source: DirtySource, bandwidth: float, cost_pages, n_points: int,
                max_steps: int | None = None, factor: float = 1.0) -> SweepResult:
    """Simulated fixed-bandwidth cost at `n_points` bandwidths (log-spaced from B/200 to B).

    Each run keeps its bandwidth and is cut at the stop point that was best in hindsight
    (min over steps of pre-copy cost so far + remaining pages / B), the trace analogue of the
    model's C(b, N*(b)). Runs last 3 RAM transfers at that bandwidth (or `max_steps`). `factor`
    turns costs of a charged (normalised) `cost_pages` back into seconds (`replay.charge`)."""
    bs = np.geomspace(bandwidth / 200.0, bandwidth, n_points)
    sim = fixed_hindsight_costs(source, bandwidth, cost_pages, bs, max_steps, factor)
    analytic = fixed_cost_curve(bs, source.n_pages, source.mean_p, bandwidth, cost_pages) * source.step_seconds
    return SweepResult(pages_to_rate(bs, source.page_size, source.step_seconds), sim, analytic * factor)


def fixed_hindsight_costs(source: DirtySource, bandwidth: float, cost_pages, rates: Sequence[float],
                          max_steps: int | None = None, factor: float = 1.0) -> np.ndarray:
    """Cost in seconds of a migration at each fixed rate (pages/step), cut at its best stop in
    hindsight. Separate from `sweep_fixed` so a benchmark can add the rates policies chose to the
    grid: an oracle is only a bound on the rates it tried."""
    M, s = source.n_pages, source.step_seconds
    sim = np.empty(len(rates))
    for j, b in enumerate(rates):
        horizon = math.ceil(3 * M / b) if max_steps is None else max_steps
        r = simulate(source, Fixed(b, n_clean=None, precopy_time=None), bandwidth, cost_pages,
                     max_steps=horizon)
        stop_now = np.concatenate(([0.0], r.cost_so_far)) + np.concatenate(([M], r.dirty)) / bandwidth * s
        sim[j] = stop_now.min()
    return sim * factor


def run_replay(trace: str | MappedTrace | None = None, scenarios: Sequence[Scenario | str] | None = None,
               algorithms: Sequence[str] = ALGORITHMS, cost: CostFunction | str = DEFAULT_COST_SPEC, *,
               uniform_p: float | None = None, uniform_step_seconds: float = 0.1, extend: str = "loop",
               seed: int = 0, options: PolicyOptions | None = None, sweep_points: int = 0,
               max_time_s: float | None = None, skip_seconds: float = 0.0,
               progress: Callable[[str], None] | None = None, charge: Charge | None = None) -> ReplayReport:
    """Replays a trace (path or MappedTrace) or, with `uniform_p`, a synthetic uniform workload.

    `skip_seconds` leaves out the start of a trace given as a path (see `replay.trace_map`).
    Without `scenarios`, a trace is replayed on a RAM sized from the recorded service (its resident
    memory, rounded up: `service_scenario`) and on the slides' four scenarios. A scenario whose RAM
    is smaller than the trace's footprint is reported as such and the others still run.
    `charge` says what the cost charges (`replay.charge`; default: the slides' absolute cost)."""
    if (trace is None) == (uniform_p is None):
        raise CalmError("give either a trace or a uniform dirtying probability (--uniform P), not both")
    default_scenarios = not scenarios
    scenarios = [parse_scenario(s) if isinstance(s, str) else s for s in (scenarios or SLIDE_SCENARIOS)]
    algorithms = parse_algorithms(list(algorithms))
    cost_fn = parse_cost(cost) if isinstance(cost, str) else cost
    options = options or PolicyOptions()
    if skip_seconds and (trace is None or isinstance(trace, MappedTrace)):
        raise CalmError("--skip applies to a trace file only")
    if trace is None and any(s.own_memory for s in scenarios):
        raise CalmError("a trace@RATE scenario replays a trace on its own memory: give a trace, not --uniform")
    if trace is not None:
        mapped = trace if isinstance(trace, MappedTrace) else map_trace(trace, skip_seconds=skip_seconds)
        page_size, step_seconds = mapped.page_size, mapped.step_seconds
        workload = {"kind": "trace", **mapped.describe(), "extend": extend,
                    **({"seed": seed} if extend == "resample" else {})}
        make_source = lambda n: TraceSource(mapped, n, extend, seed)  # noqa: E731
    else:
        page_size, step_seconds = UNIFORM_PAGE_SIZE, float(uniform_step_seconds)
        make_source = lambda n: UniformSource(n, uniform_p, seed=seed, page_size=page_size,  # noqa: E731
                                              step_seconds=step_seconds)
        workload = {"kind": "uniform", "p": uniform_p, "step_seconds": step_seconds, "seed": seed}
    origin = {}
    if trace is not None and default_scenarios:
        service = service_scenario(mapped, SERVICE_BANDWIDTH_BPS)
        scenarios = [service] + [s for s in scenarios if s != service]
        origin[service] = "service"
    for scenario in scenarios:
        options.check(scenario, algorithms)
    cost_pages = in_pages(cost_fn, page_size, step_seconds)
    charge = charge or Charge()
    report = ReplayReport(workload, {**cost_fn.describe(), **charge.describe()}, step_seconds, page_size)
    if trace is not None:
        report.notes += mapped.notes
    max_steps = _max_steps(max_time_s, step_seconds)
    def fits(scenario: Scenario) -> bool:  # a RAM too small for the service is reported, not run
        return trace is None or scenario.own_memory or mapped.fits(scenario.n_pages(page_size))

    if trace is not None and not any(fits(s) for s in scenarios):
        check_fits(mapped.footprint, max(s.n_pages(page_size) for s in scenarios), page_size)
    sources = [make_source(None if s.own_memory else s.n_pages(page_size)) if fits(s) else None
               for s in scenarios]  # refusals first
    for scenario, source in zip(scenarios, sources):
        bandwidth = scenario.pages_per_step(page_size, step_seconds)
        if source is None:
            n_pages = scenario.n_pages(page_size)
            report.scenarios.append(ScenarioResult(
                scenario, n_pages, bandwidth, float("nan"), [], ram_bytes=n_pages * page_size,
                origin=origin.get(scenario, ""),
                skipped=f"too small: RAM < the service's dirtied footprint "
                        f"({format_size(mapped.footprint * page_size)})"))
            continue
        charged, factor = charge.apply(cost_pages, bandwidth)
        results = []
        for name in algorithms:
            where = f"{scenario.name}: {name}"
            if progress:
                progress(where)
            step_progress = (lambda msg, where=where: progress(f"{where}, {msg}")) if progress else None
            results.append(scale_result(simulate(source, options.make(name), bandwidth, charged, max_steps,
                                                 progress=step_progress), factor))
        sweep = sweep_fixed(source, bandwidth, charged, sweep_points, max_steps, factor) if sweep_points else None
        report.scenarios.append(ScenarioResult(scenario, source.n_pages, bandwidth, source.mean_p, results, sweep,
                                               ram_bytes=source.n_pages * page_size,
                                               layout=source.layout.describe(), origin=origin.get(scenario, "")))
    if trace is not None:
        report.notes += _loop_notes(mapped, report, extend)
    return report


def service_scenario(mapped: MappedTrace, bandwidth_bps: float) -> Scenario:
    """The RAM of the recorded service: its resident memory (each page once; the footprint for a
    trace without it), rounded up to a size VMs come in (see `round_up_ram`)."""
    pages = max(mapped.resident_pages or 0, mapped.footprint, 1)
    return Scenario(round_up_ram(pages * mapped.page_size), bandwidth_bps)


def round_up_ram(size: int) -> int:
    """The next RAM size of the form 2**k or 3 * 2**(k-1) bytes (64 MiB, 96 MiB, 128 MiB, 192 MiB,
    ...), at least 64 MiB: the sizes memory is sold in, at most 50% above `size`."""
    size = max(int(size), 64 << 20)
    k = (size - 1).bit_length()  # 2**k >= size
    three_halves = 3 << (k - 2)
    return three_halves if three_halves >= size else 1 << k


def _loop_notes(mapped: MappedTrace, report: ReplayReport, extend: str) -> list[str]:
    """Says when runs replayed the trace's idle tail (looped: as if the service idled each pass)."""
    if mapped.idle_tail_steps < max(2, IDLE_TAIL_SHARE * mapped.n_steps):
        return []  # a sample or two of calm: not a tail worth a word
    busy = mapped.n_steps - mapped.idle_tail_steps
    step = mapped.step_seconds
    runs = [r for sc in report.scenarios for r in sc.results]
    into = [r for r in runs if r.total_time > busy * step]
    if not into:
        return []
    looped = [r for r in into if r.total_time > mapped.n_steps * step]
    return [f"the trace ends with {mapped.idle_tail_steps * step:.3g} s of idle samples "
            f"({mapped.idle_tail_steps} of {mapped.n_steps}, fewer than 5% of a mean sample's dirty pages); "
            f"{len(into)} of {len(runs)} runs replayed into it"
            + (f" and {len(looped)} past the trace's end, "
               + ("replaying it again with its idle tail on every pass" if extend == "loop" else
                  "resampling pages at their mean rate, idle tail included")
               if looped else "")
            + ": trim the recording, or record the service under steady load"]
