"""Writing replay and model results: the printed table, CSV and JSON files.

The JSON files are the contract with `calm report`: results.json holds everything needed to redo
the table and plots (scenarios, algorithms, cost/time/downtime, bandwidth series).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


from calm.core.units import format_rate, format_size

TABLE_COLUMNS = ("scenario", "ram_bytes", "bandwidth_bps", "algorithm", "cost_s", "total_time_s",
                 "downtime_s", "precopy_time_s", "pages_sent", "rounds", "forced", "stop_reason")


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
    path.write_text(json.dumps(json_ready(data), indent=1) + "\n")
    return path


def write_csv(rows: list[dict], columns, path: Path) -> Path:
    with path.open("w", newline="") as f:
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
        key = (r["ram_bytes"], r["bandwidth_bps"])
        ram, bw = (format_size(r["ram_bytes"]), format_rate(r["bandwidth_bps"])) if key != prev else ("", "")
        prev = key
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
