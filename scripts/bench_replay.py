#!/usr/bin/env python3
"""Benchmark of the replay: the slides' table, a real trace on RAMs of 1 GiB to 1 TiB, and
analytic CALM at M = 2^18; the simulator of today against the one before the footprint engine.

Targets: the whole slides' table (5 policies x 4 scenarios, 1 GiB synthetic trace) in under 10 s
and no slower than before (issues 5, 16); a real trace replayed at 1TiB@10Gbit with all policies in
under 10 s and under 1 GiB of memory (issue 16); the analytic CALM schedule for M = 262,144 pages
in under 1 s.

Method. Traces: a synthetic 1 GiB one (262,144 pages, 600 samples of 0.1 s, the profile below)
written with the real TraceWriter, and a real recording (`--trace`, by default 25 s of
`scripts/sqlite_fill_update.py` recorded here with `calm record --interval 0.2`, hash backend,
replayed with `--skip 6s`). Every replay timing runs in a fresh process (imports excluded, the
trace mapped before the clock starts) that reports its wall time and its peak RSS (ru_maxrss,
the whole process). The baseline is the simulator at `--baseline-rev` (git archive of that
commit, the same worker code) run in the same invocation, alternating with the current one;
a baseline run that exceeds `--timeout` is stopped and reported as such. The table is timed
twice: with each simulator's own default time limit (what `calm replay` does) and with the old
limit (100 RAM send times) for both, which compares the engines on the same work.

    python scripts/bench_replay.py [--repeat 3] [--trace REAL.h5 --skip 6s] [--baseline-rev REV]
                                   [--timeout 300] [--keep DIR] [--json OUT.json]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_trees import old_tree, run_worker  # noqa: E402
from calm.core.argtypes import OneLineErrorParser, duration  # noqa: E402
from calm.replay import model  # noqa: E402
from calm.replay.cost import DEFAULT_COST_SPEC, in_pages, parse_cost  # noqa: E402
from calm.replay.scenario import SLIDE_SCENARIOS, parse_scenario  # noqa: E402
from calm.replay.trace_map import map_trace  # noqa: E402
from calm.workloads.synthetic import write_profile_trace  # noqa: E402

PAGES, SAMPLES, INTERVAL = 262_144, 600, 0.1
# Alternating 10 s phases: a zipf-skewed working set, then 2 % hot pages at 0.1 per step over a
# cold background (about 380 dirty pages per 0.1 s step on average, ~125 Mbit/s of dirtying).
PROFILE = "phases:10:zipf:0.6:0.5/hotcold:0.02:0.1:0.0002"
BASELINE_REV = "f129f41"  # main before the footprint engine
SCALE_SCENARIOS = ("1GiB@10Gbit", "64GiB@10Gbit", "1TiB@10Gbit", "1TiB@1Gbit")
ALGORITHMS = ("calm", "clark", "xen", "qemu", "fixed")

# Runs in the old or the new tree; prints one JSON line. Modes: "table" (run_replay, own
# defaults), "table-old-limit" (simulate with the old default limit), "scale" (one scenario,
# each policy timed on its own).
WORKER = r"""
mapped = map_trace(job["trace"], skip_seconds=job.get("skip", 0.0))
F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), mapped.page_size, mapped.step_seconds)
out = {"runs": [], "engine": ENGINE}
t0 = time.perf_counter()
if job["mode"] == "table":
    report = run_replay(mapped, job["scenarios"], job["algorithms"])
    out["steps"] = sum(len(r.time) for s in report.scenarios for r in s.results)
    out["rows"] = [{k: row[k] for k in ("scenario", "algorithm", "cost_s", "total_time_s", "downtime_s", "forced",
                                         "stop_reason")} for row in report.table()]
else:
    for text in job["scenarios"]:
        sc = parse_scenario(text)
        M, B = sc.n_pages(mapped.page_size), sc.pages_per_step(mapped.page_size, mapped.step_seconds)
        source = TraceSource(mapped, M)
        limit = max(1000, math.ceil(100 * M / B)) if job["mode"] == "table-old-limit" else None
        for name in job["algorithms"]:
            t1 = time.perf_counter()
            r = simulate(source, PolicyOptions().make(name), B, F, limit)
            out["runs"].append({"scenario": text, "algorithm": name, "seconds": time.perf_counter() - t1,
                                "steps": len(r.time), "cost_s": r.cost, "total_time_s": r.total_time,
                                "downtime_s": r.downtime, "forced": bool(r.forced), "stop_reason": r.stop_reason})
out["seconds"] = time.perf_counter() - t0
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def worker(tree: Path | None, job: dict, timeout: float | None) -> dict:
    return run_worker(WORKER, tree, job, timeout) or {"timeout": timeout}


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
            "kernel": platform.release(), "load": os.getloadavg(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def record_real_trace(path: Path) -> None:
    """25 s of the sqlite fill-and-update service, recorded here as README describes."""
    subprocess.run([sys.executable, "-m", "calm", "record", "-o", str(path), "--force", "--interval", "0.2",
                    "--duration", "25", "-q", "--", sys.executable, str(REPO / "scripts/sqlite_fill_update.py")],
                   check=True)


def bench_table(trace: Path, old: Path, repeat: int, timeout: float) -> dict:
    """The slides' table, current and baseline alternating, with each one's own default limit
    and with the old limit for both."""
    out = {}
    for mode in ("table", "table-old-limit"):
        job = {"trace": str(trace), "mode": mode, "scenarios": list(SLIDE_SCENARIOS), "algorithms": list(ALGORITHMS)}
        new_t, old_t, new_last, old_last = [], [], None, None
        for _ in range(repeat):
            new_last = worker(None, job, None)
            new_t.append(new_last["seconds"])
            old_last = worker(old, job, timeout)
            old_t.append(old_last.get("seconds", float("nan")))
        out[mode] = {"current_s": statistics.median(new_t), "baseline_s": statistics.median(old_t),
                     "ratio": statistics.median(new_t) / statistics.median(old_t),
                     "current_steps": new_last.get("steps") or sum(r["steps"] for r in new_last["runs"]),
                     "baseline_steps": old_last.get("steps") or sum(r["steps"] for r in old_last.get("runs", [])),
                     "current_rows": new_last.get("rows") or new_last["runs"],
                     "baseline_rows": old_last.get("rows") or old_last.get("runs")}
    return out


def bench_scale(trace: Path, skip: float, old: Path, timeout: float) -> list[dict]:
    rows = []
    for sc in SCALE_SCENARIOS:
        job = {"trace": str(trace), "skip": skip, "mode": "scale", "scenarios": [sc], "algorithms": list(ALGORITHMS)}
        new = worker(None, job, None)
        base = worker(old, job, timeout)
        rows.append({"scenario": sc, "current": new, "baseline": base})
    return rows


def main() -> int:
    ap = OneLineErrorParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trace", help="a real recording for the RAM-size benchmark (default: record one, 25 s)")
    ap.add_argument("--skip", type=duration(allow_zero=True), default=6.0, help="--skip for the real trace (6s)")
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help=f"the old simulator's commit (default {BASELINE_REV})")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds a baseline run may take (default 300)")
    ap.add_argument("--keep", metavar="DIR", help="keep the traces in DIR")
    ap.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    old = old_tree(args.baseline_rev, work / "baseline")
    out: dict = {"machine": machine(), "baseline_rev": args.baseline_rev}

    synthetic = work / "bench-1GiB.h5"
    write_profile_trace(synthetic, pages=PAGES, samples=SAMPLES, interval=INTERVAL, profile=PROFILE, seed=1)
    maps = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        mapped = map_trace(synthetic)
        maps.append(time.perf_counter() - t0)
    out["map_trace_s"] = statistics.median(maps)
    out["synthetic"] = {"pages": PAGES, "samples": SAMPLES, "interval_s": INTERVAL, "profile": PROFILE,
                        "footprint_pages": mapped.footprint, "dirty_events": mapped.n_events}
    out["table"] = bench_table(synthetic, old, args.repeat, args.timeout)

    real = Path(args.trace) if args.trace else work / "sqlite.h5"
    if not args.trace:
        record_real_trace(real)
    rm = map_trace(real, skip_seconds=args.skip)
    out["real"] = {"path": str(real), "skip_s": args.skip, "steps": rm.n_steps, "step_s": rm.step_seconds,
                   "footprint_pages": rm.footprint, "dirty_events": rm.n_events}
    out["scale"] = bench_scale(real, args.skip, old, args.timeout)

    # Analytic CALM, M = 2^18, for the first scenario (1GiB@1Gbit) at the synthetic trace's mean p.
    sc = parse_scenario(SLIDE_SCENARIOS[0])
    B = sc.pages_per_step(4096, mapped.step_seconds)
    p = mapped.mean_p(PAGES)
    F = in_pages(parse_cost(DEFAULT_COST_SPEC), 4096, mapped.step_seconds)
    times = []
    for _ in range(max(args.repeat, 5)):
        t0 = time.perf_counter()
        plan = model.calm_plan(PAGES, p, B, F)
        times.append(time.perf_counter() - t0)
    out["calm_analytic_s"] = {"median": statistics.median(times), "steps_evaluated": int(len(plan.start))}
    n_loop = 4096  # the baseline: a scalar best_step_one per page, on the first 4,096 steps, scaled
    t0 = time.perf_counter()
    for i in range(n_loop):
        model.best_step_one(float(i), 1.0, p, B, F)
    out["calm_scalar_loop_s"] = (time.perf_counter() - t0) * len(plan.start) / n_loop
    t0 = time.perf_counter()  # `calm replay` end to end: a new process, imports, table, CSV and JSON, no plots
    subprocess.run([sys.executable, "-m", "calm", "replay", str(synthetic), "-o", str(work / "cli-out"), "--no-plots",
                    "-q", "-f"], check=True)
    out["cli_replay_s"] = time.perf_counter() - t0

    m = out["machine"]
    print(f"machine: {m['cpu']} ({m['cores']} cores), Python {m['python']}, numpy {m['numpy']}, {m['date']}, "
          f"load {m['load'][0]:.2f}; baseline = {args.baseline_rev}")
    print(f"synthetic trace: {PAGES} pages x {SAMPLES} x {INTERVAL} s, footprint {mapped.footprint}, "
          f"{mapped.n_events} events")
    for mode, label in (("table", "own default limits"), ("table-old-limit", "old limit for both")):
        t = out["table"][mode]
        print(f"slides' table, 20 runs, {label}: current {t['current_s']:.3f} s ({t['current_steps']} steps), "
              f"baseline {t['baseline_s']:.3f} s ({t['baseline_steps']} steps), ratio {t['ratio']:.2f}")
    r = out["real"]
    print(f"real trace {real} (--skip {args.skip:g}s): {r['steps']} steps of {r['step_s']:.3g} s, footprint "
          f"{r['footprint_pages']}, {r['dirty_events']} events")
    for row in out["scale"]:
        cur, base = row["current"], row["baseline"]
        per = ", ".join(f"{x['algorithm']} {x['seconds']:.2f}" for x in cur["runs"])
        old_s = (f"{base['seconds']:.1f} s, {base['peak_rss_mib']:.0f} MiB" if "seconds" in base
                 else f"> {base['timeout']:.0f} s (stopped)")
        print(f"{row['scenario']:>12}: current {cur['seconds']:.2f} s, {cur['peak_rss_mib']:.0f} MiB ({per}); "
              f"baseline {old_s}")
    print(f"map_trace of the synthetic trace: {out['map_trace_s']:.3f} s; calm replay end to end (no plots): "
          f"{out['cli_replay_s']:.2f} s")
    print(f"analytic CALM, M = {PAGES}: {out['calm_analytic_s']['median']:.3f} s median (target < 1 s); scalar "
          f"per-step loop (baseline): {out['calm_scalar_loop_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
