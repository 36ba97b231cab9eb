#!/usr/bin/env python3
"""Benchmark of `calm sweep`: 200 replays serially and on a 2-worker Dask LocalCluster, in the same
run, and what a 16-worker cluster would take from the measured per-task costs.

The sweep: 5 synthetic traces (65,536 pages = 256 MiB, 300 samples of 0.1 s, five dirtying
profiles; written with the real TraceWriter) x the slides' 4 scenarios x 5 policies x 2 cost
functions = 200 cells. Serial: each trace mapped once, then `run_cell` for every cell in one
process (what the sweep would cost without Dask). Dask: `run_cells` on a LocalCluster of
--workers processes (mapping, scatter, tasks, gathering; the cluster's start-up is timed apart).
Goal (issue 16): serial / 2 workers >= 1.7. The machine's own ceiling is measured beside it: the
same cells split over --workers plain processes (a process pool, no Dask, each mapping the traces
itself), which is what --workers cores give this workload with nothing in between; Dask's share of
that ceiling is what the sweep machinery costs.

Prediction for --predict workers: the measured serial duration of every cell, plus the measured
Dask cost per task, placed greedily in submission order on the next free worker (Dask runs tasks
roughly first-in first-out); the scheduler cannot hand out more than 1 / (its time per task) tasks
per second, measured with 2,000 empty tasks. Mapping (in the client) is added as measured, and
the scatter as measured per worker copy times the workers (a broadcast sends one copy to each).
The same model is checked against the measured 2-worker run. The machine is shared: serial and
Dask runs alternate (ABBA) over --rounds and the load average is recorded with each.

    python scripts/bench_sweep.py [--workers 2] [--predict 16] [--rounds 2] [--json OUT.json]
"""

from __future__ import annotations

import heapq
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from calm.core.argtypes import OneLineErrorParser  # noqa: E402
from calm.replay.cost import parse_cost  # noqa: E402
from calm.replay.defaults import ALGORITHMS, SLIDE_SCENARIOS  # noqa: E402
from calm.replay.scenario import parse_scenario  # noqa: E402
from calm.replay.sweep import SweepPlan, run_cell, variants  # noqa: E402
from calm.replay.sweep_cluster import open_client, run_cells  # noqa: E402
from calm.replay.trace_map import map_trace  # noqa: E402
from calm.workloads.synthetic import write_profile_trace  # noqa: E402

PAGES, SAMPLES, INTERVAL = 65_536, 300, 0.1
PROFILES = ("phases:10:zipf:0.6:0.5/hotcold:0.02:0.1:0.0002", "hotcold:0.05:0.2:0.0005", "zipf:0.9:0.3",
            "uniform:0.0008", "phases:5:hotcold:0.1:0.05:0.0001/zipf:0.7:0.2")
COSTS = ("mm1:rate=12,size=1MiB,sla=1s", "mm1:rate=24,size=512KiB,sla=500ms")


def machine() -> dict:
    import numpy as np

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "load_avg_1min_at_start": os.getloadavg()[0],
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def serial(plan) -> tuple[float, float, list[dict]]:
    """Wall and CPU seconds of every cell run in this process, and the results."""
    t0, c0 = time.perf_counter(), time.process_time()
    mapped = {t: map_trace(t) for t in plan.traces}
    results = [run_cell(mapped[c.trace], c, plan.settings) for c in plan.cells()]
    return time.perf_counter() - t0, time.process_time() - c0, results


def _run_share(job: tuple) -> int:
    plan, k, n = job
    mapped = {t: map_trace(t) for t in plan.traces}
    return len([run_cell(mapped[c.trace], c, plan.settings) for c in plan.cells()[k::n]])


def plain_processes(plan, workers: int) -> float:
    """Wall seconds for every cell on `workers` pool processes without Dask (the ceiling, see the
    module doc); the pool is started and warmed before the clock starts."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
        list(pool.map(_noop, range(workers * 4)))
        t0 = time.perf_counter()
        done = sum(pool.map(_run_share, [(plan, k, workers) for k in range(workers)]))
        elapsed = time.perf_counter() - t0
    assert done == len(plan.cells())
    return elapsed


def _cpu_seconds() -> float:
    return time.process_time()


def on_dask(plan, workers: int) -> dict:
    t0 = time.perf_counter()
    with open_client(workers=workers) as client:
        cpu0 = client.run(_cpu_seconds)
        started = time.perf_counter()
        results = run_cells(client, plan)
        finished = time.perf_counter()
        cpu1 = client.run(_cpu_seconds)
        worker_cpu = sum(cpu1[w] - cpu0[w] for w in cpu1)
        overhead = per_task_overhead(client)
        scatter = scatter_cost(client, plan.traces)
    return {"startup_s": started - t0, "run_s": finished - started, "results": results, "worker_cpu_s": worker_cpu,
            **overhead, **scatter}


def scatter_cost(client, traces: list[str]) -> dict:
    """Time to send every mapped trace to every worker again (what run_cells does once per trace)."""
    mapped = [map_trace(t) for t in traces]
    t0 = time.perf_counter()
    futures = [client.scatter(m, broadcast=True, hash=False) for m in mapped]
    elapsed = time.perf_counter() - t0
    client.cancel(futures)
    return {"scatter_s": elapsed, "scatter_bytes": sum(m.pages.nbytes + m.step_offsets.nbytes + m.write_counts.nbytes
                                                       for m in mapped)}


def _noop(i: int) -> int:
    return i


def per_task_overhead(client, n: int = 2000) -> dict:
    """Wall time per empty task through the scheduler (submit, run, gather): its throughput bound."""
    t0 = time.perf_counter()
    client.gather(client.map(_noop, range(n), pure=False))
    return {"empty_tasks": n, "per_task_s": (time.perf_counter() - t0) / n}


def makespan(durations: list[float], workers: int, per_task: float, scheduler_s: float) -> float:
    """Greedy list scheduling in submission order (each task to the worker free first), with a
    per-task cost, bounded below by the scheduler's own throughput."""
    free = [0.0] * workers
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d + per_task)
    return max(max(free), len(durations) * scheduler_s)


def main() -> int:
    ap = OneLineErrorParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--predict", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="serial + Dask runs, in alternating order (ABBA...)")
    ap.add_argument("--keep", metavar="DIR", help="keep the traces in DIR")
    ap.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    traces = []
    for i, profile in enumerate(PROFILES):
        path = work / f"trace{i}.h5"
        if not path.exists():
            write_profile_trace(path, pages=PAGES, samples=SAMPLES, interval=INTERVAL, profile=profile, seed=i)
        traces.append(str(path))
    plan = SweepPlan(traces, [parse_scenario(s) for s in SLIDE_SCENARIOS], [parse_cost(c) for c in COSTS],
                     variants(ALGORITHMS, {}))
    n = len(plan.cells())
    out: dict = {"machine": machine(), "cells": n, "workers": args.workers, "rounds": []}
    print(f"{out['machine']['cpu']} ({out['machine']['cores']} cores), Python {out['machine']['python']}, "
          f"{out['machine']['date']}, load {out['machine']['load_avg_1min_at_start']:.2f}")
    print(f"{n} cells: {len(traces)} traces x {len(SLIDE_SCENARIOS)} scenarios x {len(ALGORITHMS)} policies x "
          f"{len(COSTS)} costs")
    for r in range(args.rounds):
        if r % 2 == 0:  # ABBA: the order alternates, so a drift in the machine's load cancels
            serial_s, serial_cpu, serial_results = serial(plan)
            plain_s = plain_processes(plan, args.workers)
            dask = on_dask(plan, args.workers)
        else:
            dask = on_dask(plan, args.workers)
            plain_s = plain_processes(plan, args.workers)
            serial_s, serial_cpu, serial_results = serial(plan)
        assert [x["cost_s"] for x in dask.pop("results")] == [x["cost_s"] for x in serial_results]
        durations = [x["elapsed_s"] for x in serial_results]
        mapping_s = serial_s - sum(durations)  # mapping the traces (and the loop itself)
        overhead = dask["per_task_s"]
        per_copy = dask["scatter_s"] / args.workers  # broadcast: one copy per worker
        model_2 = makespan(durations, args.workers, overhead, overhead) + mapping_s + per_copy * args.workers
        model_n = makespan(durations, args.predict, overhead, overhead) + mapping_s + per_copy * args.predict
        row = {"serial_s": serial_s, "serial_cpu_s": serial_cpu, "dask_worker_cpu_s": dask["worker_cpu_s"],
               "dask_run_s": dask["run_s"], "dask_startup_s": dask["startup_s"],
               "speedup": serial_s / dask["run_s"], "plain_processes_s": plain_s, "ceiling": serial_s / plain_s,
               "speedup_with_startup": serial_s / (dask["run_s"] + dask["startup_s"]),
               "cell_s": {"sum": sum(durations), "median": statistics.median(durations), "max": max(durations)},
               "mapping_s": mapping_s, "scheduler_per_task_s": overhead, "scatter_s": dask["scatter_s"],
               "scatter_bytes": dask["scatter_bytes"], "serial_cell_s": durations,
               f"model_{args.workers}_workers_s": model_2, f"model_{args.predict}_workers_s": model_n,
               "load_avg_1min_after": os.getloadavg()[0]}
        out["rounds"].append(row)
        print(f"round {r + 1}: serial {serial_s:.2f} s; {args.workers} workers {dask['run_s']:.2f} s "
              f"(+ {dask['startup_s']:.2f} s cluster start-up): speedup {row['speedup']:.2f}x "
              f"({row['speedup_with_startup']:.2f}x with start-up)")
        print(f"  without Dask, {args.workers} plain processes: {plain_s:.2f} s, the machine's ceiling "
              f"{row['ceiling']:.2f}x; Dask reaches {row['speedup'] / row['ceiling']:.0%} of it")
        print(f"  CPU: serial {serial_cpu:.2f} s, Dask workers {dask['worker_cpu_s']:.2f} s; load average "
              f"{row['load_avg_1min_after']:.2f} after the round")
        print(f"  cells: sum {sum(durations):.2f} s, median {statistics.median(durations) * 1e3:.0f} ms, "
              f"max {max(durations):.2f} s; mapping {mapping_s:.2f} s; Dask per empty task "
              f"{overhead * 1e3:.2f} ms; scatter {dask['scatter_bytes'] / 1e6:.1f} MB to {args.workers} workers "
              f"{dask['scatter_s']:.2f} s")
        print(f"  model: {args.workers} workers {model_2:.2f} s (measured {dask['run_s']:.2f} s); "
              f"{args.predict} workers {model_n:.2f} s (speedup {serial_s / model_n:.1f}x over serial)")
    ratios = [row["speedup"] for row in out["rounds"]]
    out["median_speedup"] = statistics.median(ratios)
    out["median_ceiling"] = statistics.median(row["ceiling"] for row in out["rounds"])
    print(f"median speedup over {len(ratios)} rounds: {out['median_speedup']:.2f}x (goal >= 1.7x); "
          f"the machine's ceiling without Dask: {out['median_ceiling']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
