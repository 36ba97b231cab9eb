"""The slides' evaluation table (Nutch under Poisson load, SLA 1 s; ../shared/model.md) and a
side-by-side view of a `calm replay` results.csv against it; and the headline numbers of the
slides' three dirtying plots (top 100, top 500, over time) from a `calm analyze` directory.

The slides give cost, total time and downtime for Clark, CALM and Fixed in four scenarios; Xen and
QEMU rows of ours have no slide counterpart. The claim to reproduce is the shape: CALM's cost at or
below Clark's and Fixed's in every scenario.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

# scenario (as calm replay spells it) -> algorithm -> (cost, total time s, downtime s)
SLIDES = {
    "1GiB@1Gbit": {"clark": (0.04, 105.2, 0.0424), "calm": (0.01, 85.78, 0.0078), "fixed": (0.01, 19.93, 0.0035)},
    "512MiB@512Mbit": {"clark": (0.27, 67.99, 0.0039), "calm": (0.01, 79.03, 0.0078), "fixed": (0.02, 142.55, 0.0069)},
    "512MiB@256Mbit": {"clark": (48.71, 67.22, 0.6412), "calm": (12.05, 56.58, 11.940), "fixed": (12.42, 31.90, 12.232)},
    "256MiB@256Mbit": {"clark": (36.86, 40.38, 2.1160), "calm": (4.05, 56.37, 0.3940), "fixed": (4.52, 35.60, 4.2325)},
}
ORDER = ("calm", "clark", "fixed", "xen", "qemu")


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def slides_comparison(results_csv: Path) -> str:
    """A markdown table: each of our rows beside the slides' row for the same scenario and
    algorithm, then per scenario whether CALM is at or below Clark and Fixed (the slides' claim).
    Empty when the replay ran none of the slides' scenarios."""
    rows = list(csv.DictReader(results_csv.open()))
    rows = [r for r in rows if r["scenario"] in SLIDES]
    if not rows:
        return ""
    lines = ["| scenario | algorithm | cost (s) | total time (s) | downtime (s) | slides: cost | total time | downtime |",
             "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for scenario in SLIDES:
        mine = {r["algorithm"]: r for r in rows if r["scenario"] == scenario}
        if not mine:
            continue
        for alg in sorted(mine, key=lambda a: ORDER.index(a) if a in ORDER else len(ORDER)):
            r = mine[alg]
            theirs = SLIDES[scenario].get(alg)
            slide = " | ".join(_num(v) for v in theirs) if theirs else "- | - | -"
            forced = " (forced)" if r.get("forced") in ("True", "true", "1") else ""
            lines.append(f"| {scenario} | {alg} | {_num(float(r['cost_s']))}{forced} | "
                         f"{_num(float(r['total_time_s']))} | {float(r['downtime_s']):.4g} | {slide} |")
        if {"calm", "clark", "fixed"} <= mine.keys():
            c = float(mine["calm"]["cost_s"])
            above = [f"{alg.capitalize()} ({_num(float(mine[alg]['cost_s']))})" for alg in ("clark", "fixed")
                     if c > float(mine[alg]["cost_s"])]
            verdicts.append(f"{scenario}: CALM ({_num(c)}) " + (f"ABOVE {' and '.join(above)}" if above
                                                                 else "at or below Clark and Fixed"))
    return "\n".join(lines + [""] + verdicts)


def dirtying_headline(analysis: Path) -> dict:
    """The numbers behind the slides' dirtying plots: mean p of the 100 and 500 most often dirtied
    pages and p at those ranks (per sample), and the dirty rate over time (mean and max)."""
    summary = json.loads((analysis / "summary.json").read_text())
    with (analysis / "pages.csv").open() as f:
        header = f.readline().rstrip("\n").split(",")
        column = header.index("p_per_sample")
        p = np.array([float(line.split(",")[column]) for line in f])  # ranked, most often dirtied first
    out = {"interval_s": summary["interval_measured_s"], "dirtied_mib": summary["service"]["dirtied_mib"],
           "dirty_rate_mb_s": summary["dirty_rate_mb_s"]}
    for n in (100, 500):
        out[f"top{n}_mean_p"] = float(p[:n].mean()) if p.size else 0.0
        out[f"p_at_rank_{n}"] = float(p[n - 1]) if p.size >= n else None
    return out


def describe_headline(h: dict) -> str:
    rank = {n: "-" if h[f"p_at_rank_{n}"] is None else f"{h[f'p_at_rank_{n}']:.3f}" for n in (100, 500)}
    return (f"top-100 mean p {h['top100_mean_p']:.3f} (p at rank 100: {rank[100]}), top-500 mean p "
            f"{h['top500_mean_p']:.3f} (rank 500: {rank[500]}) per {h['interval_s']:.2f} s sample; dirty rate "
            f"mean {h['dirty_rate_mb_s']['mean']:.1f} MB/s, max {h['dirty_rate_mb_s']['max']:.1f} MB/s; "
            f"{h['dirtied_mib']:.1f} MiB dirtied in all")
