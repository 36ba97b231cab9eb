"""Figures of the report, rendered to PNG in memory and embedded as data: URIs.

Why PNG data URIs: the report must be one file that opens anywhere without fetching anything;
PNGs of a few tens of KB render identically in every browser, and the heavy meshes (heatmaps)
would be rasterized inside an SVG anyway. The analysis figures are the analyzer's own
(`analyzer.plots.FIGURES`), so `calm analyze` and the report never disagree. The replay figures
are drawn here from results.json alone, so `calm report --replay` needs nothing else.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 96
ALGORITHM_COLORS = {"calm": "#1b9e77", "clark": "#d95f02", "xen": "#7570b3", "qemu": "#e7298a",
                    "fixed": "#666666"}
# Xen and QEMU both send at full speed: a dashed, wider line keeps the one below visible.
ALGORITHM_LINES = {"xen": {"lw": 3.0, "ls": (0, (4, 2))}, "qemu": {"lw": 1.3}}


@dataclass
class Image:
    """An embedded figure: a data: URI and its pixel size (for the <img> width/height)."""

    uri: str
    width: int
    height: int


def to_image(fig: Figure) -> Image:
    """Renders and closes `fig`."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    data = buf.getvalue()
    width = int.from_bytes(data[16:20], "big")  # the PNG IHDR chunk
    height = int.from_bytes(data[20:24], "big")
    return Image("data:image/png;base64," + base64.b64encode(data).decode("ascii"), width, height)


def analysis_images(analysis, names) -> dict[str, Image]:
    """The analyzer's figures `names` (keys of analyzer.plots.FIGURES) as embedded images."""
    from analyzer.plots import FIGURES

    return {name: to_image(FIGURES[name](analysis)) for name in names}


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


def replay_images(results: dict) -> dict[str, Image]:
    images = {"cost_bars": to_image(cost_bars(results)),
              "bandwidth": to_image(bandwidth_over_time(results))}
    sweep = cost_sweep(results)
    if sweep is not None:
        images["sweep"] = to_image(sweep)
    return images
