"""The sweep's tidy table (one row per trace, scenario, cost, policy and options) and what is read
off it: the winners of each (trace, scenario, cost) and the printed summary.

Files: `sweep.csv` always; `sweep.parquet` too when pyarrow is installed (typed columns, for
pandas/polars/DuckDB users); `sweep.json` says what was swept, on what, and how long it took.
Each file is written to a private temporary file in the output directory (mode 0600, created
exclusively, so never through a planted link) and renamed over its name when complete.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from calm.core.paths import private_file
from calm.replay.compare import tie_limit
from calm.replay.outputs import json_ready
from calm.replay.sweep_options import SWEEP_OPTIONS

# Column -> type (for Parquet; CSV writes empty cells for missing values).
COLUMNS: dict[str, str] = {
    "trace": "string", "scenario": "string", "ram_bytes": "int64", "bandwidth_bps": "float64",
    "cost": "string", "algorithm": "string", "policy": "string",
    **{o.field: ("int64" if o.field.endswith("rounds") else "float64") for o in SWEEP_OPTIONS},
    "cost_s": "float64", "total_time_s": "float64", "downtime_s": "float64", "precopy_time_s": "float64",
    "pages_sent": "int64", "rounds": "int64", "forced": "bool", "stop_reason": "string", "page_size": "int64",
    "settings": "string", "error": "string", "elapsed_s": "float64",
}


def write_private(path: Path, fill: Callable[[io.BufferedWriter], None]) -> Path:
    """Writes `path` privately (0600, never through a symlink, renamed into place when whole:
    calm.core.paths). The sweep's output directory was checked (and --force given) beforehand."""
    with private_file(path, force=True) as f:
        fill(f)
    return path


def write_csv(rows: list[dict], path: Path) -> Path:
    def fill(f) -> None:
        text = io.TextIOWrapper(f, newline="", encoding="utf-8")
        w = csv.DictWriter(text, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        text.flush()
        text.detach()
    return write_private(path, fill)


def write_parquet(rows: list[dict], path: Path) -> Path | None:
    """The table as Parquet, or None when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    schema = pa.schema([(name, getattr(pa, kind)() if kind != "bool" else pa.bool_())
                        for name, kind in COLUMNS.items()])
    table = pa.Table.from_pylist([{k: row.get(k) for k in COLUMNS} for row in rows], schema=schema)
    return write_private(path, lambda f: pq.write_table(table, f))


def write_json(data: dict, path: Path) -> Path:
    text = json.dumps(json_ready(data), indent=1) + "\n"
    return write_private(path, lambda f: f.write(text.encode()))


def read_csv(path: Path) -> list[dict]:
    """sweep.csv back into typed rows (for `calm sweep`'s own plots and for tests)."""
    kinds = {"int64": int, "float64": float, "bool": lambda v: v == "True", "string": str}
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (None if v == "" and COLUMNS[k] != "string" else kinds[COLUMNS[k]](v))
                 for k, v in row.items() if k in COLUMNS} for row in csv.DictReader(f)]


def group_key(row: dict) -> tuple[str, str, str]:
    return row["trace"], row["scenario"], row["cost"]


def winners(rows: list[dict]) -> dict[tuple[str, str, str], list[str]]:
    """(trace, scenario, cost) -> the policies of least cost there, with the project's tie rule
    (`calm.replay.compare`: within 1 % of the lowest or one page's downtime); groups where no cell
    succeeded map to []."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[group_key(row)].append(row)
    out = {}
    for key, members in groups.items():
        ok = [r for r in members if not r["error"] and r["cost_s"] is not None and math.isfinite(r["cost_s"])]
        if not ok:
            out[key] = []
            continue
        best = min(ok, key=lambda r: r["cost_s"])
        limit = tie_limit(best["cost_s"], best["page_size"], best["bandwidth_bps"])
        out[key] = [r["policy"] for r in ok if r["cost_s"] <= limit]
    return out


def summary(rows: list[dict]) -> list[dict]:
    """Per (scenario, cost, policy): cost across traces (median, min, max), wins, failed cells."""
    wins: dict[tuple, int] = defaultdict(int)
    for (_, scenario, cost), names in winners(rows).items():
        for name in names:
            wins[scenario, cost, name] += 1
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["scenario"], row["cost"], row["policy"]].append(row)
    out = []
    for (scenario, cost, policy), members in groups.items():
        costs = [r["cost_s"] for r in members if not r["error"]]
        out.append({"scenario": scenario, "cost": cost, "policy": policy, "traces": len(members),
                    "median_cost_s": statistics.median(costs) if costs else None,
                    "min_cost_s": min(costs) if costs else None, "max_cost_s": max(costs) if costs else None,
                    "wins": wins[scenario, cost, policy], "failed": len(members) - len(costs)})
    return out


def format_summary(rows: list[dict]) -> str:
    """The summary as aligned text: one line per scenario (and cost) and policy."""
    from calm.core.units import sig

    table = summary(rows)
    several_costs = len({r["cost"] for r in table}) > 1
    n_traces = len({r["trace"] for r in rows})
    header = ["scenario", *(["cost"] if several_costs else []), "policy", "median cost (s)",
              "min", "max", f"wins (of {n_traces})", "failed"]
    lines = [header]
    prev = None
    for r in table:
        where = (r["scenario"], r["cost"])
        first = [r["scenario"], *([r["cost"]] if several_costs else [])] if where != prev else \
            ["", *([""] if several_costs else [])]
        prev = where
        lines.append([*first, r["policy"], sig(r["median_cost_s"], 4), sig(r["min_cost_s"], 3),
                      sig(r["max_cost_s"], 3), str(r["wins"]), str(r["failed"] or "")])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = set(range(len(header) - 5, len(header)))
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
