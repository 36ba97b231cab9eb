"""The grid's table (BENCHMARKS.md) and its summary against the goals of the validation issue:
median absolute error <= 10% for total time and bytes, sync count within +/-1 in >= 80% of cells,
downtime within max(20 ms, 30%), and calm's errors below the calc-dirty-rate predictor's.

Errors are per run (each run's predictions come from that run's own recording and calc-dirty-rate
measurements), signed as (predicted - real) / real; a cell shows the mean over its runs. Runs
where QEMU did not converge (cancelled at the deadline) are counted apart: the question there is
whether each predictor also said "does not converge".
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

PREDICTORS = (("calm", "calm"), ("qemu_predictor", "calc-dirty-rate"))


@dataclass
class Run:
    cell: tuple[str, float, int]  # workload, bandwidth Mbit/s, downtime-limit ms
    data: dict

    @property
    def converged(self) -> bool:
        return bool(self.data["real"]["converged"])

    def real(self, what: str) -> float:
        r = self.data["real"]
        return {"time": r["total_time_ms"] / 1000, "bytes": r["transferred"], "syncs": r["dirty_sync_count"],
                "downtime": r["downtime_ms"] / 1000}[what]

    def predicted(self, predictor: str, what: str) -> float:
        p = self.data[predictor]
        return {"time": p["total_time_s"], "bytes": p["bytes"], "syncs": p["syncs"], "downtime": p["downtime_s"]}[what]

    def error(self, predictor: str, what: str) -> float:
        """Signed relative error; the sync difference for "syncs"."""
        real, predicted = self.real(what), self.predicted(predictor, what)
        if what == "syncs":
            return predicted - real
        return (predicted - real) / real

    def downtime_ok(self, predictor: str) -> bool:
        real, predicted = self.real("downtime"), self.predicted(predictor, "downtime")
        return abs(predicted - real) <= max(0.020, 0.30 * real)


def load(out: Path) -> list[Run]:
    runs = []
    for path in sorted(out.glob("*/*/*/run.json")):
        data = json.loads(path.read_text())
        spec = data["spec"]
        runs.append(Run((spec["workload"]["name"], spec["bandwidth_bit_s"] / 1e6, spec["downtime_ms"]), data))
    return runs


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:+.0f}%"


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def cell_rows(runs: list[Run]) -> list[list[str]]:
    cells: dict[tuple, list[Run]] = {}
    for r in runs:
        cells.setdefault(r.cell, []).append(r)
    rows = []
    for (workload, bw, dt), group in sorted(cells.items()):
        ok = [r for r in group if r.converged]
        row = [workload, f"{bw:g}", f"{dt}"]
        if not ok:
            said = [f"{label} {sum(not r.data[key]['converges'] for r in group)}/{len(group)}"
                    for key, label in PREDICTORS]
            rows.append(row + [f"did not converge ({len(group)} runs); said so: {', '.join(said)}"] + [""] * 8)
            continue
        times = [r.real("time") for r in ok]
        spread = (max(times) - min(times)) / statistics.fmean(times) if len(times) > 1 else math.nan
        row += [" / ".join(f"{t:.1f}" for t in times), _pct(spread),
                " / ".join(f"{r.real('downtime') * 1000:.0f}" for r in ok),
                " / ".join(f"{r.real('bytes') / 2**20:.0f}" for r in ok),
                " / ".join(f"{r.real('syncs'):.0f}" for r in ok),
                " / ".join(f"{r.data['real']['mbps']:.0f}" for r in ok)]
        for key, _ in PREDICTORS:
            converging = [r for r in ok if r.data[key]["converges"]]
            if not converging:
                row.append("predicted no convergence")
                continue
            row.append(f"{_pct(_mean([r.error(key, 'time') for r in converging]))} / "
                       f"{_pct(_mean([r.error(key, 'bytes') for r in converging]))} / "
                       f"{_mean([r.error(key, 'syncs') for r in converging]):+.1f} / "
                       f"{_mean([r.predicted(key, 'downtime') for r in converging]) * 1000:.0f}")
        if len(ok) < len(group):
            row[-1] += f" ({len(group) - len(ok)} run(s) did not converge)"
        rows.append(row)
    return rows


HEADER = ["workload", "Mbit/s", "limit ms", "real total s", "spread", "real downtime ms", "real MiB",
          "real syncs", "QEMU Mbit/s", "calm: time / bytes / syncs / downtime ms",
          "calc-dirty-rate: time / bytes / syncs / downtime ms"]


def markdown(runs: list[Run]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in cell_rows(runs):
        lines.append("| " + " | ".join(row[:len(HEADER)]) + " |")
    return "\n".join(lines)


def summary(runs: list[Run]) -> dict:
    """The goals, over converged runs (each run once; a cell's runs all count)."""
    ok = [r for r in runs if r.converged]
    out: dict = {"runs": len(runs), "converged_runs": len(ok), "non_converged_runs": len(runs) - len(ok)}
    times_by_cell: dict[tuple, list[float]] = {}
    for r in ok:
        times_by_cell.setdefault(r.cell, []).append(r.real("time"))
    spreads = [(max(t) - min(t)) / statistics.fmean(t) for t in times_by_cell.values() if len(t) > 1]
    out["real_time_spread_median"] = statistics.median(spreads) if spreads else math.nan
    for key, label in PREDICTORS:
        conv = [r for r in ok if r.data[key]["converges"]]
        s = {"runs_predicted_converging": len(conv)}
        if conv:
            s["median_abs_time_error"] = statistics.median(abs(r.error(key, "time")) for r in conv)
            s["median_abs_bytes_error"] = statistics.median(abs(r.error(key, "bytes")) for r in conv)
            s["syncs_within_1"] = sum(abs(r.error(key, "syncs")) <= 1 for r in conv) / len(conv)
            s["downtime_ok"] = sum(r.downtime_ok(key) for r in conv) / len(conv)
        bad = [r for r in runs if not r.converged]
        s["non_convergence_predicted"] = f"{sum(not r.data[key]['converges'] for r in bad)}/{len(bad)}"
        s["false_non_convergence"] = f"{len(ok) - len(conv)}/{len(ok)}"
        out[label] = s
    return out


def summary_text(s: dict) -> str:
    lines = [f"{s['runs']} runs, {s['converged_runs']} converged, {s['non_converged_runs']} cancelled at the "
             f"deadline; real total time spread between repeats (median over cells): "
             f"{_pct(s['real_time_spread_median']).lstrip('+')}"]
    for _, label in PREDICTORS:
        p = s[label]
        if "median_abs_time_error" in p:
            lines.append(f"{label}: median |error| total time {100 * p['median_abs_time_error']:.1f}%, bytes "
                         f"{100 * p['median_abs_bytes_error']:.1f}%; syncs within +/-1 in "
                         f"{100 * p['syncs_within_1']:.0f}% of runs; downtime within max(20 ms, 30%) in "
                         f"{100 * p['downtime_ok']:.0f}%; non-convergence said for {p['non_convergence_predicted']} "
                         f"non-converging runs, wrongly for {p['false_non_convergence']} converging ones")
        else:
            lines.append(f"{label}: predicted no converging run")
    return "\n".join(lines)
