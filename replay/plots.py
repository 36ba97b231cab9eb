"""Figures of replay and model results (matplotlib, Agg backend), drawn by the layer that owns
their data so that `calm replay` (PNG and SVG files) and `calm report` (embedded images) show the
same figures.

Replay figures are drawn from the results dictionary (`ReplayReport.to_dict()`, i.e. what
results.json holds), so a report can be rebuilt from results.json alone:
- `cost_bars`: cost of each algorithm in each scenario;
- `bandwidth_over_time`: the slides' "Bandwidth Usage on Different Scenarios", one panel per
  scenario and algorithm so that no algorithm hides under another;
- `cost_sweep`: the slides' "Migration's Cost With Real Dirtying Trace": simulated cost of fixed
  bandwidth migrations against the bandwidth, beside the uniform model's curve at the trace's
  mean p, with the oracle (the sweep's cheapest point), the `fixed` row's planned bandwidth and
  CALM's cost marked for what they are (only with `--sweep`).
`plot_model` draws `calm model`'s figure ("Simulated Cost of a Fixed Bandwidth Migration") in
Mbit/s and seconds, with pages per time unit on second axes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from calm.replay.compare import lowest_cost  # noqa: E402
from calm.core.paths import private_file  # noqa: E402
from calm.replay.model import CalmPlan, FixedPlan  # noqa: E402

FORMATS = ("png", "svg")
ALGORITHM_COLORS = {"calm": "#1b9e77", "calm-pages": "#66a61e", "clark": "#d95f02", "clark-adaptive": "#a6761d",
                    "xen": "#7570b3", "qemu": "#e7298a", "fixed": "#666666"}


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
    """Grouped bars: the cost of each algorithm in each scenario, log scale (costs span decades).
    The lowest of each scenario is outlined, ties included (calm.replay.compare), as the report's
    badges mark them."""
    scenarios = results["scenarios"]
    algorithms = _algorithms(results)
    width = 0.8 / max(len(algorithms), 1)
    fig, ax = plt.subplots(figsize=(9, 4.6))
    costs = [r["cost"] for sc in scenarios for r in sc["results"] if r["cost"]]
    floor = min(costs) / 3 if costs else 1e-6
    lowest = [lowest_cost(sc, int(results["page_size"])) for sc in scenarios]
    x = np.arange(len(scenarios))
    for i, name in enumerate(algorithms):
        values = []
        for sc in scenarios:
            found = [r["cost"] for r in sc["results"] if r["algorithm"] == name]
            values.append((found[0] or 0.0) if found and found[0] is not None else np.nan)
        bars = ax.bar(x + (i - (len(algorithms) - 1) / 2) * width, np.maximum(values, floor), width * 0.92,
                      color=_color(name, i), label=name, bottom=0,
                      edgecolor=["black" if name in low else "none" for low in lowest],
                      linewidth=[1.6 if name in low else 0 for low in lowest])
        for bar, v in zip(bars, values):
            if np.isfinite(v):
                ax.annotate(f"{v:.2g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.margins(y=0.25)  # room for the rotated labels above the tallest bars
    ax.set_xticks(x, [sc["name"].replace("@", " @ ") for sc in scenarios])
    ax.set_ylabel("cost (s of violated SLA, log scale)")
    ax.set_xlabel("scenario: RAM @ total bandwidth")
    names = ax.legend([plt.Rectangle((0, 0), 1, 1, color=_color(a, i)) for i, a in enumerate(algorithms)],
                      algorithms, ncols=len(algorithms), loc="upper center", bbox_to_anchor=(0.5, -0.18),
                      frameon=False)
    ax.add_artist(names)
    ax.legend([plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", linewidth=1.6)],
              ["outlined: the lowest cost of the scenario (ties: within 1 % or one page's downtime)"],
              loc="upper center", bbox_to_anchor=(0.5, -0.27), frameon=False, fontsize=8)
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
    """Migration bandwidth against time: one row per scenario, one panel per algorithm, so no
    algorithm hides under another (Xen and QEMU both send at the link's rate; CALM and Fixed may
    hold the same rate). Time is on a log axis, shared along a row: runs last from seconds (Xen,
    QEMU) to minutes (CALM)."""
    step = float(results["step_seconds"])
    scenarios = results["scenarios"]
    algorithms = _algorithms(results)
    rows, cols = len(scenarios), max(len(algorithms), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 1.2, 1.75 * rows + 1.0), squeeze=False,
                             sharex="row", sharey="row", layout="constrained")
    for axes_row, sc in zip(axes, scenarios):
        link = sc["bandwidth_bps"] / 1e6
        by_alg = {r["algorithm"]: r for r in sc["results"]}
        for ax, name in zip(axes_row, algorithms):
            color = _color(name, algorithms.index(name))
            r = by_alg.get(name)
            series = r["series"] if r else {"time_s": [], "bandwidth_bps": []}
            t = np.asarray(series["time_s"], dtype=float) + step
            rate = np.asarray(series["bandwidth_bps"], dtype=float) / 1e6
            if t.size:
                ax.fill_between(t, rate, step="pre", color=color, alpha=0.25, lw=0)
                ax.step(t, rate, where="pre", color=color, lw=1.4, gid="bandwidth")
                ax.plot(t[-1:], rate[-1:], "o", color=color, ms=4)
            else:
                ax.text(0.5, 0.5, "not run" if r is None else "no pre-copy", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8, color="0.4")
            ax.axhline(link, color="0.4", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_ylim(0, link * 1.1)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        axes_row[0].set_ylabel(f"{sc['name'].replace('@', ' @ ')}\nMbit/s", fontsize=8)
    for ax, name in zip(axes[0], algorithms):
        ax.set_title(name, fontsize=10, color=_color(name, algorithms.index(name)), fontweight="bold")
    for ax in axes[-1]:
        ax.set_xlabel("time (s, log)", fontsize=8)
    fig.suptitle("Bandwidth the migration takes from the service, per scenario and algorithm\n"
                 "(dashed: the whole link; dot: the stop-and-copy begins)", fontsize=10)
    return fig


def cost_sweep(results: dict) -> Figure | None:
    """Cost of fixed-bandwidth migrations against the bandwidth, simulated on the trace and by the
    uniform model at the trace's mean p; None when replay ran without --sweep.

    Two points are labelled for what they are: the sweep's cheapest point is an oracle (bandwidth
    and stop chosen knowing the whole trace), and the `fixed` row of the table is the bandwidth
    planned in advance (from the per-page profile, `replay.fixed_profile`), drawn at the cost it
    had on the trace. The model's curve
    falls to 1e-30 and below where F vanishes; it is drawn at the axis floor there, with markers,
    rather than leaving the axes."""
    scenarios = [sc for sc in results["scenarios"] if sc.get("sweep")]
    if not scenarios:
        return None
    fig, axes = _panels(len(scenarios))
    for ax, sc in zip(axes, scenarios):
        sweep = sc["sweep"]
        bw = np.asarray(sweep["bandwidth_bps"], dtype=float) / 1e6
        sim = np.asarray([np.nan if v is None else v for v in sweep["simulated_cost"]], dtype=float)
        model = np.asarray([np.nan if v is None else v for v in sweep["analytic_cost"]], dtype=float)
        calm = [r["cost"] for r in sc["results"] if r["algorithm"] == "calm" and r["cost"] is not None]
        plan = _fixed_plan(sc, results)
        seen = [v for v in sim if v > 0] + [c for c in calm if c > 0] + ([plan[1]] if plan and plan[1] > 0 else [])
        floor = min(seen) / 10 if seen else 1e-6
        top = max(np.nanmax(sim), np.nanmax(np.where(model > 0, model, np.nan)), *seen) * 3
        ax.plot(bw, sim, **_SWEEP_STYLE["sim"])
        ax.plot(bw, np.maximum(model, floor), **_SWEEP_STYLE["model"])
        below = model < floor
        if below.any():
            ax.plot(bw[below], np.full(below.sum(), floor), **_SWEEP_STYLE["below"])
        if np.isfinite(sim).any():
            best = int(np.nanargmin(sim))
            ax.plot(bw[best], sim[best], zorder=5, **_SWEEP_STYLE["oracle"])
        if plan:
            ax.plot(plan[0], plan[1], zorder=5, **_SWEEP_STYLE["plan"])
        if calm:
            ax.axhline(calm[0], **_SWEEP_STYLE["calm"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(floor / 1.5, top)
        ax.set_title(sc["name"].replace("@", " @ "), fontsize=10)
        ax.set_xlabel("fixed migration bandwidth (Mbit/s, log)")
        ax.set_ylabel("cost (s of violated SLA, log)")
        ax.grid(alpha=0.3)
    labels = {"sim": "fixed bandwidth, simulated on the trace (stopped at its best moment)",
              "oracle": "oracle: the cheapest of these bandwidths, chosen in hindsight",
              "plan": "the table's fixed row: bandwidth planned before the migration, cost on the trace",
              "model": "the uniform model at the trace's mean p", "below": "the model, below the axis",
              "calm": "CALM on the trace"}
    handles = [plt.Line2D([], [], **_SWEEP_STYLE[k]) for k in labels]
    fig.legend(handles, list(labels.values()), loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.suptitle("Cost of a fixed-bandwidth migration against its bandwidth")
    return fig


_SWEEP_STYLE = {
    "sim": {"marker": "o", "ls": "-", "color": "#1f78b4", "ms": 3.5},
    "model": {"ls": "--", "color": "#a6761d"},
    "below": {"marker": "v", "ls": "none", "color": "#a6761d", "ms": 5},
    "oracle": {"marker": "*", "ls": "none", "color": "black", "ms": 12},
    "plan": {"marker": "D", "ls": "none", "color": ALGORITHM_COLORS["fixed"], "ms": 7},
    "calm": {"color": ALGORITHM_COLORS["calm"], "lw": 1.2},
}


def _fixed_plan(scenario: dict, results: dict) -> tuple[float, float] | None:
    """(planned bandwidth in Mbit/s, cost on the trace) of the scenario's `fixed` row."""
    for r in scenario["results"]:
        rate = (r.get("options") or {}).get("bandwidth_pages_per_step")
        if r["algorithm"] == "fixed" and r["cost"] is not None and isinstance(rate, (int, float)) and rate > 0:
            return rate * results["page_size"] * 8 / results["step_seconds"] / 1e6, r["cost"]
    return None


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
        with private_file(path, force=True) as f:
            fig.savefig(f, format=ext, dpi=120, bbox_inches="tight")
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


def schedule_summary(bandwidth: np.ndarray, to_rate, unit: str) -> str:
    """What CALM's schedule does, read from the schedule itself (not from the slides, whose
    "low first, higher later" holds only where the cost function makes waiting cheap)."""
    if len(bandwidth) == 0:
        return "CALM sends nothing before the stop-and-copy"
    first, last = to_rate(bandwidth[0]), to_rate(bandwidth[-1])
    low, high = to_rate(np.min(bandwidth)), to_rate(np.max(bandwidth))
    if high - low <= 0.01 * high:
        return f"CALM holds {first:.4g} {unit} (within 1 %)"
    verb = "rises" if last > first else "falls"
    return f"CALM {verb} from {first:.4g} to {last:.4g} {unit}"


def plot_model(bs: np.ndarray, costs: np.ndarray, fixed: FixedPlan, calm: CalmPlan, out: Path,
               title: str, *, page_size: int, unit_s: float) -> list[Path]:
    """`calm model`'s figure in physical units (Mbit/s, seconds), pages per time unit on a
    second axis; the cost curve dives to 1e-300 where F vanishes, so the axis stops a decade
    below the cheapest plan and the curve is drawn at the floor there, with markers."""
    def mbit(pages_per_unit):
        return np.asarray(pages_per_unit, dtype=float) * page_size * 8 / unit_s / 1e6

    def pages(mbit_s):
        return np.asarray(mbit_s, dtype=float) * 1e6 * unit_s / (page_size * 8)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 5.0), layout="constrained")
    cost_s = np.asarray(costs, dtype=float) * unit_s
    plans = [c for c in (fixed.cost * unit_s, calm.cost * unit_s) if c > 0]
    positive = cost_s[cost_s > 0]
    floor = (min(plans) if plans else positive.min() if positive.size else 1.0) / 10
    left.plot(mbit(bs), np.maximum(cost_s, floor), color="C0", label="fixed bandwidth, best stop point")
    below = cost_s < floor
    if below.any():
        left.plot(mbit(bs[below]), np.full(below.sum(), floor), "v", color="C0", ms=3, alpha=0.6,
                  label="below the axis (negligible: equal costs go to the faster bandwidth)")
    left.plot(mbit([fixed.bandwidth]), [fixed.cost * unit_s], "o", color="C1", ms=7,
              label=f"optimal fixed: {mbit(fixed.bandwidth):.4g} Mbit/s, cost {fixed.cost * unit_s:.3g} s")
    left.axhline(calm.cost * unit_s, color="green", linestyle="--", label=f"CALM: cost {calm.cost * unit_s:.3g} s")
    left.set_yscale("log")
    left.set_ylim(floor / 1.5, max(cost_s.max(), *plans) * 3 if plans else None)
    left.set_xlabel("migration bandwidth (Mbit/s)")
    left.set_ylabel("cost (s of violated SLA, log)")
    left.set_title("Cost of a fixed-bandwidth migration", fontsize=10)
    left.legend(fontsize="small")
    left.secondary_xaxis("top", functions=(pages, mbit)).set_xlabel("pages per time unit", fontsize=8)

    total = mbit(bs[-1])
    t = np.concatenate(([0.0], np.cumsum(calm.step_time))) * unit_s
    if len(calm.bandwidth):
        right.step(t, mbit(np.append(calm.bandwidth, calm.bandwidth[-1])), where="post", color="green",
                   label=f"CALM (stops with {calm.n_clean:,} clean pages)")
    if fixed.bandwidth > 0:
        right.plot([0, fixed.precopy_time * unit_s], [mbit(fixed.bandwidth)] * 2, color="C1",
                   label=f"optimal fixed (stops with {fixed.n_clean:,.0f} clean pages)")
    sent = [mbit(b) for b in (np.max(calm.bandwidth) if len(calm.bandwidth) else 0.0, fixed.bandwidth)]
    top = max(sent) * 1.4 if max(sent) > 0 else total
    if top >= 0.6 * total:  # close enough to the link to show it
        top = total * 1.08
        right.axhline(total, color="0.4", lw=0.8, ls="--", label="the whole link")
    else:
        right.plot([], [], " ", label=f"the whole link: {total:.4g} Mbit/s (above)")
    right.set_ylim(0, top)  # from 0, without an offset: a flat schedule looks flat
    right.ticklabel_format(axis="y", useOffset=False)
    right.set_xlabel("time since the migration started (s)")
    right.set_ylabel("migration bandwidth (Mbit/s)")
    right.set_title("Bandwidth schedule: " + schedule_summary(calm.bandwidth, mbit, "Mbit/s"), fontsize=10)
    right.legend(fontsize="small", loc="best")
    right.secondary_yaxis("right", functions=(pages, mbit)).set_ylabel("pages per time unit", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out, "model")
