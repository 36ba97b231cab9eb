"""Writing replay and model results: the printed table, CSV and JSON files.

The JSON files are the contract with `calm report`: results.json holds everything needed to redo
the table and plots (scenarios, algorithms, cost/time/downtime, bandwidth series).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


from calm.core.paths import private_file, write_private
from calm.core.units import format_rate, format_size, mbit_s

TABLE_COLUMNS = ("scenario", "ram_bytes", "bandwidth_bps", "algorithm", "cost_s", "total_time_s",
                 "downtime_s", "precopy_time_s", "pages_sent", "rounds", "forced", "stop_reason",
                 "bytes_sent", "normal_pages", "zero_pages", "syncs")


def json_ready(value):
    """JSON has no inf/nan: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(data: dict, path: Path) -> Path:
    """Into a folder the command checked: replaces what is there, privately (calm.core.paths)."""
    return write_private(path, json.dumps(json_ready(data), indent=1) + "\n", force=True)


def write_csv(rows: list[dict], columns, path: Path) -> Path:
    with private_file(path, force=True, text=True, newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def format_table(rows: list[dict]) -> str:
    """The slides' evaluation table: RAM, bandwidth, algorithm, cost, total time, downtime."""
    header = ("RAM", "bandwidth", "algorithm", "cost (s)", "total time (s)", "downtime (s)", "stop")
    lines = [header]
    prev = None
    for r in rows:
        key = (r["scenario"], r["ram_bytes"], r["bandwidth_bps"])
        size = format_size(r["ram_bytes"])
        ram = f"trace ({size})" if r.get("own_memory") else size
        ram, bw = (ram, format_rate(r["bandwidth_bps"])) if key != prev else ("", "")
        prev = key
        if r["cost_s"] is None or r.get("oracle"):  # a scenario that could not run, or the oracle
            cost = f"{r['cost_s']:.4g}" if r["cost_s"] is not None else "-"
            lines.append((ram, bw, r["algorithm"], cost, "-", "-", r["stop_reason"]))
            continue
        lines.append((ram, bw, r["algorithm"], f"{r['cost_s']:.4g}", f"{r['total_time_s']:.2f}",
                      f"{r['downtime_s']:.4f}", ("forced: " if r["forced"] else "") + r["stop_reason"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i in (0, 1, 2, 6) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def with_oracle_rows(rows: list[dict], scenarios: list[dict]) -> list[dict]:
    """The printed table's rows plus, after each scenario swept with --sweep, an `oracle` row: the
    cheapest swept fixed bandwidth stopped at its best moment, both chosen in hindsight on the
    replayed trace. A bound on what one bandwidth could do, not a policy (results.csv keeps the
    policies only; results.json has the whole sweep)."""
    out: list[dict] = []
    for i, r in enumerate(rows):
        out.append(r)
        last = i + 1 == len(rows) or rows[i + 1]["scenario"] != r["scenario"]
        sc = next((s for s in scenarios if s["name"] == r["scenario"]), None)
        if not (last and sc and sc.get("sweep")):
            continue
        points = [(c, b) for c, b in zip(sc["sweep"]["simulated_cost"], sc["sweep"]["bandwidth_bps"])
                  if c is not None]
        if points:
            cost, rate = min(points)
            out.append({**r, "algorithm": "oracle", "oracle": True, "cost_s": cost,
                        "stop_reason": f"hindsight bound, not a policy: best of {len(points)} fixed "
                                       f"bandwidths ({mbit_s(rate)}) at its best stop"})
    return out
