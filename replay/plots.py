"""Plots of replay and model results (matplotlib, Agg backend; every figure as PNG and SVG).

- `plot_bandwidth`: migration bandwidth over time, one panel per scenario, one line per
  algorithm (the slides' "Bandwidth Usage on Different Scenarios").
- `plot_sweep`: the slides' "Migration's Cost With Real Dirtying Trace": simulated cost of fixed
  bandwidth migrations against the bandwidth, beside the uniform model's curve at the trace's
  mean p, with CALM's simulated cost as a reference line.
- `plot_model`: the slides' "Simulated Cost of a Fixed Bandwidth Migration" with CALM's cost and
  its bandwidth schedule ("low first, higher later").
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from replay.model import CalmPlan, FixedPlan  # noqa: E402
from replay.runner import ReplayReport  # noqa: E402

FORMATS = ("png", "svg")


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in FORMATS:
        path = out / f"{stem}.{ext}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _panels(n: int, width: float = 6.0, height: float = 3.6):
    cols = min(n, 2)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_bandwidth(report: ReplayReport, out: Path) -> list[Path]:
    fig, axes = _panels(len(report.scenarios))
    for ax, sc in zip(axes, report.scenarios):
        for r in sc.results:
            t = np.append(r.time, r.precopy_time)
            rate = np.append(r.rate_bps, r.rate_bps[-1] if len(r.rate_bps) else 0.0) / 1e6
            line, = ax.step(t, rate, where="post", label=f"{r.algorithm} (cost {r.cost:.3g} s)")
            if r.downtime > 0:  # stop-and-copy at the final rate
                final = r.final_pages * 8 * report.page_size / r.downtime / 1e6
                ax.plot([r.precopy_time, r.total_time], [final, final], color=line.get_color(),
                        linestyle=":", linewidth=2)
        ax.axhline(sc.scenario.bandwidth_bps / 1e6, color="grey", linewidth=0.8)
        ax.set_title(f"{sc.scenario.name} (dotted: stop-and-copy)")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("migration bandwidth (Mbit/s)")
        ax.legend(fontsize="small")
    fig.suptitle("Bandwidth used by the migration")
    return _save(fig, out, "bandwidth")


def plot_sweep(report: ReplayReport, out: Path) -> list[Path]:
    scenarios = [s for s in report.scenarios if s.sweep is not None]
    if not scenarios:
        return []
    fig, axes = _panels(len(scenarios))
    for ax, sc in zip(axes, scenarios):
        bw = sc.sweep.bandwidth_bps / 1e6
        ax.plot(bw, sc.sweep.simulated_cost, "o-", label="fixed bandwidth, simulated on the trace")
        ax.plot(bw, sc.sweep.analytic_cost, "--", label=f"uniform model, p = {sc.mean_p:.3g}")
        for r in sc.results:
            if r.algorithm == "calm":
                ax.axhline(r.cost, color="green", linewidth=1, label=f"CALM, simulated ({r.cost:.3g} s)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # The uniform curve can dive to 1e-30 where F vanishes; keep the trace's costs readable.
        seen = [c for c in sc.sweep.simulated_cost if c > 0] + [r.cost for r in sc.results if r.cost > 0]
        if seen:
            ax.set_ylim(bottom=min(seen) / 10)
        ax.set_xlabel("migration bandwidth (Mbit/s)")
        ax.set_ylabel("cost (s of violated SLA)")
        ax.set_title(sc.scenario.name)
        ax.legend(fontsize="small")
    fig.suptitle("Migration's cost with the dirtying trace")
    return _save(fig, out, "cost-vs-bandwidth")


def plot_model(bs: np.ndarray, costs: np.ndarray, fixed: FixedPlan, calm: CalmPlan, out: Path,
               title: str) -> list[Path]:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    left.plot(bs, costs, label="fixed bandwidth, best stop point")
    left.plot([fixed.bandwidth], [fixed.cost], "o", label=f"optimal fixed: b={fixed.bandwidth:.3g}, cost {fixed.cost:.4g}")
    left.axhline(calm.cost, color="green", linestyle="--", label=f"CALM: cost {calm.cost:.4g}")
    left.set_yscale("log")
    left.set_xlabel("migration bandwidth b (pages per time unit)")
    left.set_ylabel("cost (time units of violated SLA)")
    left.set_title("Cost of a fixed bandwidth migration")
    left.legend(fontsize="small")
    t = np.concatenate(([0.0], np.cumsum(calm.step_time)))
    if len(calm.bandwidth):
        right.step(t, np.append(calm.bandwidth, calm.bandwidth[-1]), where="post", color="green",
                   label=f"CALM (stops at N={calm.n_clean})")
    if fixed.bandwidth > 0:
        right.plot([0, fixed.precopy_time], [fixed.bandwidth] * 2, color="C1",
                   label=f"optimal fixed (stops at N={fixed.n_clean:.0f})")
    right.set_xlabel("time (time units)")
    right.set_ylabel("migration bandwidth (pages per time unit)")
    right.set_title("Bandwidth schedule: low first, higher later")
    right.legend(fontsize="small")
    fig.suptitle(title)
    return _save(fig, out, "model")
