#!/usr/bin/env python3
"""Issue 14's deciding benchmark: every policy on a corpus of real and synthetic traces, in the
slides' four scenarios and two costs, against the hindsight-best fixed bandwidth.

The corpus (scripts/corpus_build.py) is built into DIR and cached there: recordings of real
programs made now with `calm record --backend auto` (sqlite, the multi-process ground-truth
service, Apache under `calm load`, Redis under redis-benchmark) and synthetic traces of the shapes
that break policies. Costs: calm replay's M/M/1 default and a measured curve (--cost-csv, or
Apache's measured once here by scripts/measure-cost-curve and cached; never invented). Cells run
through calm sweep's `run_cell` (scripts/corpus_replay.py).

The goal (issue 14): the recommended CALM at or below every baseline in every cell, and within 10%
of the oracle in at least 90% of cells, reported on the whole corpus and on its test half (the
split is fixed by trace name, stated in the output). Writes DIR/results/corpus.csv and corpus.json
and prints a Markdown table.

Usage: python scripts/bench_corpus.py DIR [--rebuild] [--cost-csv FILE] [-a LIST] [--workers N]
       python scripts/bench_corpus.py DIR --synthetic-only --small   (the quick check the test runs)
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import sys
import time
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_build import RECORDINGS, SYNTHETIC, build_corpus, measured_cost_csv  # noqa: E402
from corpus_replay import ORACLE_POINTS, WITHIN, CellVerdict, Job, goal_summary, replay_corpus, verdicts  # noqa: E402

from calm.core.argtypes import OneLineErrorParser, whole  # noqa: E402
from calm.core.errors import CalmError  # noqa: E402
from calm.core.paths import write_private  # noqa: E402
from calm.replay.defaults import DEFAULT_COST_SPEC, SLIDE_SCENARIOS  # noqa: E402


def _cost_label(spec: str) -> str:
    return "mm1" if spec == DEFAULT_COST_SPEC else "measured" if spec.startswith("csv:") else spec


def _fmt(x: float) -> str:
    return "fail" if math.isnan(x) else f"{x:.4g}"


def _short(text: str, width: int = 90) -> str:
    """A source line for the table (a 60-phase ramp's profile is 1,300 characters; corpus.json has it all)."""
    return text if len(text) <= width else text[:width - 1] + "…"


def markdown_table(cells: list[CellVerdict], algorithms: list[str], recommended: str) -> str:
    head = ["trace", "half", "scenario", "cost", *algorithms, "oracle", "won", f"{recommended}/oracle", "goal"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in cells:
        miss = [f"beaten by {','.join(v.beaten_by)}"] if v.beaten_by else []
        miss += [] if v.near_oracle else [f">{WITHIN:.0%} over oracle"]
        costs = [(f"**{_fmt(v.costs[a])}**" if a == v.winner else _fmt(v.costs[a])) for a in algorithms]
        lines.append("| " + " | ".join([v.trace, v.half, v.scenario, _cost_label(v.cost), *costs, _fmt(v.oracle),
                                        v.winner, f"{v.ratio:.3g}", "; ".join(miss) or "met"]) + " |")
    return "\n".join(lines)


def summary_lines(cells: list[CellVerdict], recommended: str) -> list[str]:
    out = []
    for label, subset in (("whole corpus", cells), ("test half", [v for v in cells if v.half == "test"]),
                          ("train half", [v for v in cells if v.half == "train"])):
        s = goal_summary(subset)
        if not s["cells"]:
            continue
        beaten = ", ".join(f"{b} {n}" for b, n in s["beaten_by"].items() if n) or "none"
        out.append(f"- {label}: {s['cells']} cells; {recommended} at or below every baseline in "
                   f"{s['at_or_below_every_baseline']}, within {WITHIN:.0%} of the oracle in "
                   f"{s['within_10pct_of_oracle']}, both in {s['both']}; goal "
                   f"{'MET' if s['goal_met'] else 'NOT met'}. Cells where a baseline was cheaper: {beaten}. "
                   f"Cells where fixed beat the oracle: {s['oracle_beaten']}.")
    return out


def parameter_note(recommended: str) -> str:
    """Which traces chose the recommended CALM's parameters (the train/test rule of the brief)."""
    from calm.replay.policies import POLICIES
    from calm.replay.runner import PolicyOptions

    options = [f.name for f in fields(PolicyOptions) if f.name.startswith(recommended.replace("-", "_") + "_")]
    cls = POLICIES[recommended]
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty and k != "p"}
    shown = ", ".join(f"{k}={v}" for k, v in defaults.items())
    if options:
        return (f"{recommended} has replay options {', '.join(options)}; this benchmark does not tune them "
                f"(run at their defaults: {shown}). No trace of this corpus chose a parameter.")
    return (f"{recommended}'s windows and thresholds are not options of `calm replay`, so nothing was tuned "
            f"on the train half: they are the constructor defaults ({shown}), chosen earlier on the project's "
            f"own recordings ({cls.__module__}'s docstring). No trace of this corpus chose a parameter; the "
            f"test half is as unseen as the train half.")


def main() -> int:
    from calm.replay.policies import POLICIES

    ap = OneLineErrorParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path, help="where the corpus, the cost curve and the results go (not committed)")
    ap.add_argument("--rebuild", action="store_true", help="re-record and rewrite every trace and the cost curve")
    ap.add_argument("--synthetic-only", action="store_true", help="no recordings (and no measured cost curve "
                    "unless --cost-csv): synthetic traces only")
    ap.add_argument("--small", action="store_true", help="small synthetic traces (4096 pages, 120 samples)")
    ap.add_argument("--cost-csv", metavar="FILE", help="measured cost curve, `bandwidth,probability` rows "
                    "(default: Apache's, measured once with scripts/measure-cost-curve and cached in DIR)")
    ap.add_argument("-a", "--algorithms", default=",".join(POLICIES), metavar="LIST",
                    help=f"policies (default: every registered one: {','.join(POLICIES)})")
    ap.add_argument("--recommended", default="calm", metavar="NAME", help="the CALM judged by the goal "
                    "(default calm); the baselines are the other policies whose names do not start with calm")
    ap.add_argument("--only", metavar="NAMES", help="comma-separated trace names: build and replay only these")
    ap.add_argument("-s", "--scenario", action="append", metavar="RAM@BANDWIDTH",
                    help=f"repeatable (default: the slides' {', '.join(SLIDE_SCENARIOS)})")
    ap.add_argument("--oracle-points", type=whole(minimum=2), default=ORACLE_POINTS, metavar="N",
                    help=f"log-spaced fixed bandwidths from B/200 to B the oracle tries (default {ORACLE_POINTS}), "
                         "plus the rate the fixed policy planned")
    ap.add_argument("--workers", type=whole(minimum=1), default=2, metavar="N", help="traces replayed at once")
    args = ap.parse_args()

    from calm.replay.cost import parse_cost
    from calm.replay.runner import parse_algorithms

    algorithms = parse_algorithms(args.algorithms)
    if args.recommended not in algorithms:
        raise CalmError(f"--recommended {args.recommended} is not among the algorithms ({','.join(algorithms)})")
    if "fixed" not in algorithms:
        algorithms.append("fixed")  # the oracle's grid takes its planned rate
    from calm.replay.scenario import parse_scenario

    # Everything the user typed is checked before anything is recorded (a recording takes minutes).
    scenarios = tuple(parse_scenario(s).name for s in (args.scenario or SLIDE_SCENARIOS))
    only = set(args.only.split(",")) if args.only else None
    known = set(SYNTHETIC) | (set() if args.synthetic_only else set(RECORDINGS))
    if only and only - known:
        raise CalmError(f"--only: no trace named {', '.join(sorted(only - known))} (traces: {', '.join(known)})")
    if args.cost_csv:
        parse_cost(f"csv:{args.cost_csv}")
    started = time.time()
    note = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    corpus = build_corpus(args.dir, synthetic_only=args.synthetic_only, small=args.small, rebuild=args.rebuild,
                          only=only, note=note)
    costs = [DEFAULT_COST_SPEC]
    curve_note = "not asked for (--synthetic-only without --cost-csv)"
    if args.cost_csv or not args.synthetic_only:
        csv_path, curve_note = measured_cost_csv(args.dir, args.cost_csv, rebuild=args.rebuild, note=note)
        if csv_path:
            costs.append(f"csv:{Path(csv_path).resolve()}")
    for spec in costs:
        parse_cost(spec)  # a measured curve that came out unreadable is one line before anything runs
    ok = [t for t in corpus if not t.error]
    halves = {t.name: t.half for t in ok}
    jobs = [Job(t.name, t.path, t.skip_seconds, scenarios, tuple(costs), tuple(algorithms), args.oracle_points) for t in ok]
    rows = replay_corpus(jobs, args.workers, note)
    cells = verdicts(rows, halves, args.recommended)

    out = args.dir / "results"
    out.mkdir(exist_ok=True)
    for r in rows:
        r["half"] = halves[r["trace"]]
    with open(out / "corpus.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    s = {label: goal_summary(sub) for label, sub in (("whole", cells), ("test", [v for v in cells if v.half == "test"]),
                                                        ("train", [v for v in cells if v.half == "train"]))}
    write_private(out / "corpus.json", json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "costs": costs, "cost_curve": curve_note,
        "algorithms": algorithms, "recommended": args.recommended, "scenarios": list(scenarios),
        "oracle_points": args.oracle_points,
        "corpus": [asdict(t) for t in corpus], "summary": s, "parameters": parameter_note(args.recommended),
        "cells": [{**{k: getattr(v, k) for k in ("trace", "half", "scenario", "cost", "costs", "oracle", "winner",
                                                    "ratio", "beaten_by", "near_oracle")}} for v in cells],
        "wall_seconds": time.time() - started}, indent=1, default=str), force=True)

    print(f"## Corpus ({len(ok)} traces replayed; train/test split fixed by name)\n")
    print("| trace | half | kind | backend | skip | source |\n|---|---|---|---|---|---|")
    for t in corpus:
        print(f"| {t.name} | {t.half} | {t.kind} | {t.backend or '-'} | {t.skip_seconds:g} s | "
              f"{_short(t.source)}{' — NOT IN CORPUS: ' + t.error if t.error else ''}"
              " |")
    print(f"\nCosts: mm1 = `{DEFAULT_COST_SPEC}`; measured = {curve_note}.")
    print(f"Parameters: {parameter_note(args.recommended)}\n")
    print(markdown_table(cells, algorithms, args.recommended))
    print("\nGoal: " + args.recommended + " at or below every baseline (" + ", ".join(cells[0].baselines)
          + f") in every cell and within {WITHIN:.0%} of the oracle in at least 90% of cells.")
    print("\n".join(summary_lines(cells, args.recommended)))
    for other in [a for a in algorithms if a.startswith("calm") and a != args.recommended]:
        print(f"\nThe same goal for {other} (not the recommended one; its baselines are the same):")
        print("\n".join(summary_lines(verdicts(rows, halves, other), other)))
    print(f"\n({len(rows)} rows in {out / 'corpus.csv'}; {time.time() - started:.0f} s)")
    failed = [r for r in rows if r["error"]]
    for r in failed:
        note(f"cell failed: {r['trace']} {r['scenario']} {r['algorithm']}: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except CalmError as exc:
        print(f"bench_corpus: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
