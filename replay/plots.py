"""Figures of replay and model results (matplotlib, Agg backend), drawn by the layer that owns
their data so that `calm replay` (PNG and SVG files) and `calm report` (embedded images) show the
same figures.

Replay figures are drawn from the results dictionary (`ReplayReport.to_dict()`, i.e. what
results.json holds), so a report can be rebuilt from results.json alone:
- `cost_bars`: cost of each algorithm in each scenario;
- `bandwidth_over_time`: the slides' "Bandwidth Usage on Different Scenarios";
- `cost_sweep`: the slides' "Migration's Cost With Real Dirtying Trace": simulated cost of fixed
  bandwidth migrations against the bandwidth, beside the uniform model's curve at the trace's
  mean p, with CALM's simulated cost as a reference line (only with `--sweep`).
`plot_model` draws `calm model`'s figure ("Simulated Cost of a Fixed Bandwidth Migration").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from calm.replay.model import CalmPlan, FixedPlan  # noqa: E402

FORMATS = ("png", "svg")
ALGORITHM_COLORS = {"calm": "#1b9e77", "clark": "#d95f02", "xen": "#7570b3", "qemu": "#e7298a",
                    "fixed": "#666666"}
# Xen and QEMU both send at full speed: a dashed, wider line keeps the one below visible.
ALGORITHM_LINES = {"xen": {"lw": 3.0, "ls": (0, (4, 2))}, "qemu": {"lw": 1.3}}


def _color(algorithm: str, i: int) -> str:
    return ALGORITHM_COLORS.get(algorithm, f"C{i}")


def _algorithms(results: dict) -> list[str]:
    names: list[str] = []
    for sc in results["scenarios"]:
        for r in sc["results"]:
            if r["algorithm"] not in names:
                names.append(r["algorithm"])
    return names


def cost_bars(results: dict) -> Figure:
    """Grouped bars: the cost of each algorithm in each scenario, log scale (costs span decades)."""
    scenarios = results["scenarios"]
    algorithms = _algorithms(results)
    width = 0.8 / max(len(algorithms), 1)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    costs = [r["cost"] for sc in scenarios for r in sc["results"] if r["cost"]]
    floor = min(costs) / 3 if costs else 1e-6
    x = np.arange(len(scenarios))
    for i, name in enumerate(algorithms):
        values = []
        for sc in scenarios:
            found = [r["cost"] for r in sc["results"] if r["algorithm"] == name]
            values.append(max(found[0] or 0.0, floor) if found else np.nan)
        bars = ax.bar(x + (i - (len(algorithms) - 1) / 2) * width, values, width * 0.92,
                      color=_color(name, i), label=name, bottom=0)
        for bar, v in zip(bars, values):
            if np.isfinite(v):
                ax.annotate(f"{v:.2g}", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.margins(y=0.25)  # room for the rotated labels above the tallest bars
    ax.set_xticks(x, [sc["name"].replace("@", " @ ") for sc in scenarios])
    ax.set_ylabel("cost (s of violated SLA, log scale)")
    ax.set_xlabel("scenario: RAM @ total bandwidth")
    ax.legend(ncols=len(algorithms), loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Cost of each migration algorithm (lower is better)")
    return fig


def _panels(n: int) -> tuple[Figure, list]:
    cols = 1 if n == 1 else 2
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.3 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def bandwidth_over_time(results: dict) -> Figure:
    """Migration bandwidth against time, one panel per scenario, log time axis: the runs last
    from seconds (Xen, QEMU) to minutes (CALM), and each must stay visible."""
    step = float(results["step_seconds"])
    fig, axes = _panels(len(results["scenarios"]))
    algorithms = _algorithms(results)
    for ax, sc in zip(axes, results["scenarios"]):
        for r in sc["results"]:
            series = r["series"]
            t = np.asarray(series["time_s"], dtype=float) + step
            rate = np.asarray(series["bandwidth_bps"], dtype=float) / 1e6
            color = _color(r["algorithm"], algorithms.index(r["algorithm"]))
            if t.size:
                style = {"lw": 1.3, **ALGORITHM_LINES.get(r["algorithm"], {})}
                ax.step(t, rate, where="pre", color=color, **style)
                ax.plot(t[-1:], rate[-1:], "o", color=color, ms=4)
        ax.axhline(sc["bandwidth_bps"] / 1e6, color="0.4", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(0, sc["bandwidth_bps"] / 1e6 * 1.08)
        ax.set_title(sc["name"].replace("@", " @ "), fontsize=10)
        ax.set_xlabel("time since migration start (s, log)")
        ax.set_ylabel("migration bandwidth (Mbit/s)")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=_color(a, i), **{"lw": 2, **ALGORITHM_LINES.get(a, {})})
               for i, a in enumerate(algorithms)]
    handles.append(plt.Line2D([], [], color="0.4", lw=0.8, ls="--"))
    fig.legend(handles, algorithms + ["total bandwidth"], loc="outside lower center",
               ncols=len(handles), frameon=False)
    fig.suptitle("Bandwidth the migration takes from the service (dot: stop-and-copy begins)")
    return fig


def cost_sweep(results: dict) -> Figure | None:
    """Cost of fixed-bandwidth migrations against the bandwidth, simulated on the trace and by the
    uniform model at the trace's mean p; None when replay ran without --sweep."""
    scenarios = [sc for sc in results["scenarios"] if sc.get("sweep")]
    if not scenarios:
        return None
    fig, axes = _panels(len(scenarios))
    for ax, sc in zip(axes, scenarios):
        sweep = sc["sweep"]
        bw = np.asarray(sweep["bandwidth_bps"], dtype=float) / 1e6
        sim = np.asarray([np.nan if v is None else v for v in sweep["simulated_cost"]], dtype=float)
        model = np.asarray([np.nan if v is None else v for v in sweep["analytic_cost"]], dtype=float)
        ax.plot(bw, sim, "o-", color="#1f78b4", ms=3.5, label="fixed bandwidth, on the trace")
        ax.plot(bw, model, "--", color="#a6761d", label=f"uniform model, p = {sc.get('mean_p', 0):.3g}")
        calm = [r["cost"] for r in sc["results"] if r["algorithm"] == "calm" and r["cost"]]
        if calm:
            ax.axhline(calm[0], color=ALGORITHM_COLORS["calm"], lw=1.2, label="CALM on the trace")
        ax.set_xscale("log")
        ax.set_yscale("log")
        seen = [v for v in sim if v > 0] + calm
        if seen:  # the model's curve can dive to 1e-30 where F vanishes
            ax.set_ylim(min(seen) / 10, max(np.nanmax(sim), np.nanmax(model), *seen) * 3)
        ax.set_title(sc["name"].replace("@", " @ "), fontsize=10)
        ax.set_xlabel("fixed migration bandwidth (Mbit/s, log)")
        ax.set_ylabel("cost (s of violated SLA)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Cost of a fixed-bandwidth migration against its bandwidth")
    return fig


# name -> (figure function, file stem); a function returns None when its data is absent.
FIGURES: dict[str, tuple[Callable[[dict], Figure | None], str]] = {
    "cost_bars": (cost_bars, "cost"),
    "bandwidth": (bandwidth_over_time, "bandwidth"),
    "sweep": (cost_sweep, "cost-vs-bandwidth"),
}


def _save(fig: Figure, out: Path, stem: str) -> list[Path]:
    paths = []
    for ext in FORMATS:
        path = out / f"{stem}.{ext}"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def write_replay_plots(results: dict, out: Path) -> list[Path]:
    """Every replay figure that has data, as PNG and SVG files in `out`."""
    files: list[Path] = []
    for draw, stem in FIGURES.values():
        fig = draw(results)
        if fig is not None:
            files += _save(fig, out, stem)
    return files


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
