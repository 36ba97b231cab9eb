"""Figures of a sweep, drawn from its table rows (`calm.replay.sweep_table`), so they can be redrawn
from sweep.csv alone:

- `cost_by_policy`: for each scenario, the cost of each policy (variant) on every trace (one dot
  per trace, a bar at the median), log scale; one panel per cost function.
- `who_wins`: the share of traces on which each policy had the least cost, per scenario (ties
  split evenly), and, for up to `MAP_MAX_TRACES` traces, the map of the winner per trace and
  scenario.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from calm.replay.compare import TIE_RULE  # noqa: E402
from calm.replay.plots import ALGORITHM_COLORS, FORMATS  # noqa: E402
from calm.replay.sweep_table import winners, write_private  # noqa: E402

MAP_MAX_TRACES = 40
TIE_COLOR = "#dddddd"
NONE_COLOR = "#ffffff"


def _ordered(values) -> list:
    seen: dict = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def policy_colors(rows: list[dict]) -> dict[str, tuple]:
    """One colour per policy variant: the algorithm's colour, lighter for each further variant."""
    by_algorithm: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["policy"] not in by_algorithm[row["algorithm"]]:
            by_algorithm[row["algorithm"]].append(row["policy"])
    colors = {}
    for i, (algorithm, policies) in enumerate(by_algorithm.items()):
        base = np.array(to_rgb(ALGORITHM_COLORS.get(algorithm, f"C{i}")))
        for k, policy in enumerate(policies):
            mix = 0.55 * k / max(len(policies) - 1, 1)
            colors[policy] = tuple(base + (1 - base) * mix)
    return colors


def _columns(rows: list[dict]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(scenario, cost) pairs in table order, and short names F1, F2... of the cost functions
    when there are several (their specs are too long for an axis)."""
    columns = _ordered((r["scenario"], r["cost"]) for r in rows)
    costs = _ordered(c for _, c in columns)
    return columns, ({c: f"F{i + 1}" for i, c in enumerate(costs)} if len(costs) > 1 else {})


def _column_label(column: tuple[str, str], short: dict[str, str]) -> str:
    scenario, cost = column
    return scenario.replace("@", " @ ") + (f"\n{short[cost]}" if short else "")


def _cost_legend(fig: Figure, short: dict[str, str]) -> None:
    if short:
        fig.supxlabel("   ".join(f"{name} = {spec}" for spec, name in short.items()), fontsize=8)


def cost_by_policy(rows: list[dict]) -> Figure | None:
    """Cost of every policy on every trace, per scenario; None when no cell succeeded."""
    ok = [r for r in rows if not r["error"] and r["cost_s"] is not None]
    if not ok:
        return None
    costs = _ordered(r["cost"] for r in rows)
    scenarios = _ordered(r["scenario"] for r in rows)
    policies = _ordered(r["policy"] for r in rows)
    colors = policy_colors(rows)
    positive = [r["cost_s"] for r in ok if r["cost_s"] > 0]
    floor = min(positive) / 3 if positive else 1e-6
    width = min(18.0, max(7.0, 0.32 * len(scenarios) * len(policies) + 2))
    fig, axes = plt.subplots(len(costs), 1, figsize=(width, 3.9 * len(costs)), squeeze=False,
                             layout="constrained")
    rng = np.random.default_rng(0)  # jitter only spreads overlapping dots; it is not data
    slot = 0.8 / len(policies)
    for ax, cost in zip(axes[:, 0], costs):
        for j, policy in enumerate(policies):
            for i, scenario in enumerate(scenarios):
                values = np.array([max(r["cost_s"], floor) for r in ok if r["scenario"] == scenario
                                   and r["cost"] == cost and r["policy"] == policy])
                if not values.size:
                    continue
                x = i + (j - (len(policies) - 1) / 2) * slot
                spread = rng.uniform(-0.3, 0.3, values.size) * slot if values.size > 1 else 0.0
                ax.scatter(x + spread, values, s=10, color=colors[policy], alpha=0.7, lw=0)
                ax.plot([x - 0.4 * slot, x + 0.4 * slot], [np.median(values)] * 2, color=colors[policy], lw=2.2)
        ax.set_yscale("log")
        ax.set_xticks(range(len(scenarios)), [s.replace("@", " @ ") for s in scenarios])
        ax.set_xlim(-0.6, len(scenarios) - 0.4)
        ax.set_ylabel("cost (s of violated SLA, log)")
        ax.grid(axis="y", alpha=0.3)
        for i, scenario in enumerate(scenarios):
            if not any(r["scenario"] == scenario and r["cost"] == cost for r in ok):
                ax.text(i, 0.5, "every cell failed", transform=ax.get_xaxis_transform(), ha="center",
                        color="0.4", fontsize=8)
        ax.set_title(f"cost function {cost}" if len(costs) > 1 else "", fontsize=9)
    axes[-1, 0].set_xlabel("scenario: RAM @ total bandwidth")
    handles = [plt.Line2D([], [], color=colors[p], lw=2.2, marker="o", ms=4) for p in policies]
    fig.legend(handles, policies, loc="outside lower center", ncols=min(len(policies), 5), frameon=False,
               fontsize=8)
    n_traces = len({r["trace"] for r in rows})
    fig.suptitle(f"Cost of each policy on {n_traces} trace{'s' if n_traces != 1 else ''} "
                 "(dot: one trace, bar: median; lower is better)")
    return fig


def who_wins(rows: list[dict]) -> Figure | None:
    """Win shares per scenario, and the winner map for a few traces; None when no cell succeeded."""
    won = winners(rows)
    if not any(won.values()):
        return None
    columns, short = _columns(rows)
    traces = _ordered(r["trace"] for r in rows)
    policies = _ordered(r["policy"] for r in rows)
    colors = policy_colors(rows)
    draw_map = len(traces) <= MAP_MAX_TRACES
    map_height = 0.3 * len(traces) + 1.2 if draw_map else 0.0
    width = min(18.0, max(7.5, 1.3 * len(columns) + 3.5))
    fig = plt.figure(figsize=(width, 3.6 + map_height + (0.3 if short else 0)), layout="constrained")
    grid = fig.add_gridspec(2 if draw_map else 1, 1, height_ratios=[3.3, map_height] if draw_map else [1])
    share_ax = fig.add_subplot(grid[0])
    labels = [_column_label(c, short) for c in columns]
    bottom = np.zeros(len(columns))
    for policy in policies:
        share = np.zeros(len(columns))
        for k, (scenario, cost) in enumerate(columns):
            groups = [names for (t, s, c), names in won.items() if s == scenario and c == cost and names]
            share[k] = sum(1 / len(n) for n in groups if policy in n) / max(len(groups), 1)
        if share.any():
            share_ax.bar(range(len(columns)), share, bottom=bottom, color=colors[policy], label=policy, width=0.7)
        bottom += share
    for k, total in enumerate(bottom):
        if total == 0:
            share_ax.text(k, 0.5, "every cell\nfailed", ha="center", va="center", fontsize=8, color="0.4")
    share_ax.set_xticks(range(len(columns)), labels, fontsize=8)
    share_ax.set_ylim(0, 1)
    share_ax.set_ylabel("share of traces won\n(ties split)")
    share_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if draw_map:
        ax = fig.add_subplot(grid[1])
        image = np.ones((len(traces), len(columns), 3))
        for i, trace in enumerate(traces):
            for k, (scenario, cost) in enumerate(columns):
                names = won.get((trace, scenario, cost), [])
                image[i, k] = to_rgb(colors[names[0]] if len(names) == 1 else TIE_COLOR if names else NONE_COLOR)
                if len(traces) * len(columns) <= 400:
                    text = names[0] if len(names) == 1 else "tie: " + ", ".join(names) if names else "failed"
                    ax.text(k, i, text.replace(" ", "\n", 1) if len(text) > 14 else text, ha="center",
                            va="center", fontsize=6)
        ax.imshow(image, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(columns)), labels, fontsize=8)
        ax.set_yticks(range(len(traces)), [Path(t).name for t in traces], fontsize=7)
        ax.set_title(f"least-cost policy per trace (grey: tie, white: every cell failed)\n{TIE_RULE}", fontsize=8)
    _cost_legend(fig, short)
    fig.suptitle(f"Which policy violates the SLA least, on {len(traces)} trace{'s' if len(traces) != 1 else ''}")
    return fig


def write_sweep_plots(rows: list[dict], out: Path) -> list[Path]:
    """sweep-cost and sweep-winners as PNG and SVG in `out` (none when every cell failed), each
    written privately like the table (`write_private`)."""
    files: list[Path] = []
    for draw, stem in ((cost_by_policy, "sweep-cost"), (who_wins, "sweep-winners")):
        fig = draw(rows)
        if fig is None:
            continue
        for ext in FORMATS:
            files.append(write_private(out / f"{stem}.{ext}", partial(fig.savefig, format=ext, dpi=120,
                                                                     bbox_inches="tight")))
        plt.close(fig)
    return files
