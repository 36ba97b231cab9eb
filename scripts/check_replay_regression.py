#!/usr/bin/env python3
"""Old simulator against the current one: every policy whose rules did not change must give the
same migration, step for step.

The old code is taken from git (`--base REV`, by default the last commit before the footprint
engine: `git archive REV` into a temporary directory) and run in its own process; the current
tree runs in another. Both replay the same trace files with the same explicit time limit (the
old default, 100 RAM send times), so the comparison covers what each engine does, not their
defaults. Compared exactly: cost, pre-copy cost, times, downtime, pages sent, final pages,
rounds, stop reason, forced, and the per-step series (rate, sent, dirty, cost so far).

QEMU is left out: issue 15 changed its rules on purpose (measured-bandwidth switch-over,
unthrottled final copy, zero pages and headers on the wire, 128 MiB/s default).

    python scripts/check_replay_regression.py [--base REV] [TRACE.h5 ...]

Without traces it writes synthetic ones (the benchmark's phases profile, a hot/cold set, a
uniform one) and also replays the uniform synthetic workload. Exit 0 when everything matches.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_trees import old_tree, run_worker  # noqa: E402
BASE = "f129f41"  # main before the footprint engine (issue 16)
ALGORITHMS = ("calm", "clark", "xen", "fixed")
SCENARIOS = ("1GiB@1Gbit", "512MiB@512Mbit", "512MiB@256Mbit", "256MiB@256Mbit", "64MiB@100Mbit")
COST = "mm1:rate=12,size=1MiB,sla=1s"
FIELDS = ("cost", "precopy_cost", "total_time", "precopy_time", "downtime", "pages_sent", "final_pages",
          "rounds", "stop_reason", "forced")

# Appended to replay_trees.IMPORTS; runs in the old or the new tree.
WORKER = r"""
out = []
for work in job["workloads"]:
    mapped = map_trace(work["trace"]) if "trace" in work else None
    for sc_text in job["scenarios"]:
        sc = parse_scenario(sc_text)
        page, step = (mapped.page_size, mapped.step_seconds) if mapped else (4096, 0.1)
        M, B = sc.n_pages(page), sc.pages_per_step(page, step)
        if mapped is not None and mapped.footprint > M:
            continue
        src = TraceSource(mapped, M) if mapped else UniformSource(M, work["p"], seed=1, step_seconds=step)
        F = in_pages(parse_cost(job["cost"]), page, step)
        limit = max(1000, math.ceil(100 * M / B))
        for name in job["algorithms"]:
            r = simulate(src, PolicyOptions().make(name), B, F, limit)
            row = {k: getattr(r, k) for k in job["fields"]}
            row.update(workload=work["name"], scenario=sc_text, algorithm=name,
                       series=[a.tolist() for a in (r.rate_bps, r.sent, r.dirty, r.cost_so_far)])
            out.append(row)
print(json.dumps({"engine": ENGINE, "rows": out}))
"""


def run(tree: Path | None, job: dict) -> list[dict]:
    return run_worker(WORKER, tree, job)["rows"]


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def main() -> int:
    from calm.core.argtypes import OneLineErrorParser

    ap = OneLineErrorParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=BASE, help=f"git revision of the old simulator (default {BASE})")
    ap.add_argument("traces", nargs="*", help="trace files to replay (default: synthetic ones)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-regression-") as tmp:
        tmp = Path(tmp)
        old = old_tree(args.base, tmp / "old")
        workloads = [{"name": Path(t).name, "trace": str(Path(t).resolve())} for t in args.traces]
        if not workloads:
            from calm.workloads.synthetic import write_profile_trace
            for name, pages, samples, profile in (
                    ("phases", 65536, 300, "phases:10:zipf:0.6:0.5/hotcold:0.02:0.1:0.0002"),
                    ("hotcold", 16384, 200, "hotcold:0.05:0.3:0.001"),
                    ("uniform-trace", 8192, 100, "uniform:0.01")):
                path = tmp / f"{name}.h5"
                write_profile_trace(path, pages=pages, samples=samples, interval=0.1, profile=profile, seed=2)
                workloads.append({"name": name, "trace": str(path)})
            workloads.append({"name": "uniform p=0.002", "p": 0.002})
        job = {"workloads": workloads, "scenarios": list(SCENARIOS), "algorithms": list(ALGORITHMS),
               "cost": COST, "fields": list(FIELDS)}
        before, after = run(old, job), run(None, job)
    bad = 0
    for a, b in zip(before, after, strict=True):
        diffs = [k for k in (*FIELDS, "series") if not same(a[k], b[k])]
        label = f"{a['workload']:>16} {a['scenario']:>15} {a['algorithm']:>6}"
        if diffs:
            bad += 1
            print(f"DIFFERS {label}: " + ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in diffs if k != "series")
                  + (" (series)" if "series" in diffs else ""))
        else:
            print(f"same    {label}: cost {a['cost']:.6g}, {a['rounds']} rounds, {a['stop_reason']}")
    print(f"{len(before) - bad} of {len(before)} migrations identical (base {args.base})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
