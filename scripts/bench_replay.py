#!/usr/bin/env python3
"""Benchmark of the replay: the slides' table on a 1 GiB-RAM trace, and analytic CALM at M = 2^18.

Targets (issue 5): the whole table (5 policies x the slides' 4 scenarios) in under 10 s; the
analytic CALM schedule for M = 262,144 pages in under 1 s. Method: a synthetic trace of a
1 GiB process (262,144 pages of 4 KiB, 600 samples of 0.1 s) is written with the real
TraceWriter from the workload profile below; each timing is wall-clock (time.perf_counter), the
median of --repeat runs in this process. Baselines measured in the same run: the analytic CALM
with a per-step scalar loop (`best_step_one` per page, timed on the first 4,096 steps and
scaled), and the end-to-end `calm replay` command (a fresh process: imports, trace reading,
table, CSV and JSON, no plots).

    python scripts/bench_replay.py [--repeat 3] [--keep DIR] [--json OUT.json]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calm.core.argtypes import OneLineErrorParser  # noqa: E402
from calm.replay import model  # noqa: E402
from calm.replay.cost import DEFAULT_COST_SPEC, in_pages, parse_cost  # noqa: E402
from calm.replay.runner import ALGORITHMS, run_replay  # noqa: E402
from calm.replay.scenario import SLIDE_SCENARIOS, parse_scenario  # noqa: E402
from calm.workloads.synthetic import write_profile_trace  # noqa: E402
from calm.replay.trace_map import map_trace  # noqa: E402

PAGES, SAMPLES, INTERVAL = 262_144, 600, 0.1
# Alternating 10 s phases: a zipf-skewed working set, then 2 % hot pages at 0.1 per step over a
# cold background (about 380 dirty pages per 0.1 s step on average, ~125 Mbit/s of dirtying).
PROFILE = "phases:10:zipf:0.6:0.5/hotcold:0.02:0.1:0.0002"


def timed(fn, repeat: int):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), value


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "kernel": platform.release(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def main() -> int:
    ap = OneLineErrorParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="keep the trace and outputs in DIR")
    ap.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    trace = work / "bench-1GiB.h5"
    out: dict = {"machine": machine(), "trace": {"pages": PAGES, "samples": SAMPLES, "interval_s": INTERVAL,
                                                 "profile": PROFILE}}

    t0 = time.perf_counter()
    write_profile_trace(trace, pages=PAGES, samples=SAMPLES, interval=INTERVAL, profile=PROFILE, seed=1)
    out["trace"]["write_s"] = time.perf_counter() - t0
    out["trace"]["file_bytes"] = trace.stat().st_size

    med, best, mapped = timed(lambda: map_trace(trace), args.repeat)
    out["map_trace_s"] = {"median": med, "min": best}
    out["trace"].update(footprint_pages=mapped.footprint, dirty_events=mapped.n_events)

    med, best, report = timed(lambda: run_replay(mapped, SLIDE_SCENARIOS, ALGORITHMS), args.repeat)
    out["table_s"] = {"median": med, "min": best, "runs": len(SLIDE_SCENARIOS) * len(ALGORITHMS)}
    out["table"] = [{k: r[k] for k in ("scenario", "algorithm", "cost_s", "total_time_s", "downtime_s",
                                       "forced", "stop_reason")} for r in report.table()]
    steps = sum(len(r.time) for s in report.scenarios for r in s.results)
    out["table_steps"] = steps

    # Analytic CALM, M = 2^18, for the first scenario (1GiB@1Gbit) at the trace's mean p.
    sc = parse_scenario(SLIDE_SCENARIOS[0])
    B = sc.pages_per_step(4096, mapped.step_seconds)
    p = mapped.mean_p(PAGES)
    F = in_pages(parse_cost(DEFAULT_COST_SPEC), 4096, mapped.step_seconds)
    med, best, plan = timed(lambda: model.calm_plan(PAGES, p, B, F), max(args.repeat, 5))
    out["calm_analytic_s"] = {"median": med, "min": best, "pages": PAGES, "p": p, "B_pages_per_step": B,
                              "steps_evaluated": int(len(plan.start)), "n_clean": plan.n_clean}
    n_loop = 4096
    t0 = time.perf_counter()
    for i in range(n_loop):
        model.best_step_one(float(i), 1.0, p, B, F)
    loop = time.perf_counter() - t0
    out["calm_scalar_loop_s"] = {"measured_steps": n_loop, "measured_s": loop,
                                 "scaled_to_all_steps_s": loop * len(plan.start) / n_loop}

    cli_out = work / "cli-out"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "calm", "replay", str(trace), "-o", str(cli_out), "--no-plots", "-q"],
                   check=True, cwd=REPO)
    out["cli_replay_s"] = time.perf_counter() - t0

    m = out["machine"]
    print(f"machine: {m['cpu']} ({m['cores']} cores), Python {m['python']}, numpy {m['numpy']}, {m['date']}")
    print(f"trace: {PAGES} pages x {SAMPLES} samples of {INTERVAL} s, profile {PROFILE}: footprint "
          f"{mapped.footprint} pages, {mapped.n_events} dirty events, {out['trace']['file_bytes'] / 1e6:.1f} MB")
    print(f"map_trace (2 streaming passes):              {out['map_trace_s']['median']:.3f} s median")
    print(f"table, {out['table_s']['runs']} runs ({steps} simulated steps):      "
          f"{out['table_s']['median']:.3f} s median, {out['table_s']['min']:.3f} s min   (target < 10 s)")
    print(f"calm replay command end to end (no plots):   {out['cli_replay_s']:.3f} s")
    print(f"analytic CALM, M = {PAGES}, vectorised:      {out['calm_analytic_s']['median']:.3f} s median   "
          f"(target < 1 s)")
    print(f"analytic CALM, scalar per-step loop (baseline): {out['calm_scalar_loop_s']['scaled_to_all_steps_s']:.1f} s "
          f"(measured on {n_loop} steps, scaled)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
