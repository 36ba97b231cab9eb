"""Running replay code from two trees side by side: the current (installed) one and an older
commit's, for the regression check and the benchmark's baseline (scripts/check_replay_regression.py,
scripts/bench_replay.py).

Why a subprocess per tree: both trees define the same module names, and an installed calm
(editable) would otherwise shadow the older tree's modules. The worker code gets `legacy` in its
job to import the pre-`calm.*` layout, and reports the file of the simulator it ran, which is
checked against the tree it was meant for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The import block of a worker: the tree before calm.* (legacy) or the current one.
IMPORTS = r"""
import json, math, resource, sys, time
job = json.loads(sys.argv[1])
if job.get("legacy"):
    from replay.runner import PolicyOptions, run_replay
    from replay.dirty import TraceSource, UniformSource
    from replay.simulator import simulate
    from replay.trace_map import map_trace
    from replay.scenario import parse_scenario
    from replay.cost import in_pages, parse_cost
else:
    from calm.replay.runner import PolicyOptions, run_replay
    from calm.replay.dirty import TraceSource, UniformSource
    from calm.replay.simulator import simulate
    from calm.replay.trace_map import map_trace
    from calm.replay.scenario import parse_scenario
    from calm.replay.cost import in_pages, parse_cost
ENGINE = simulate.__code__.co_filename
"""


def old_tree(rev: str, into: Path) -> Path:
    """`git archive REV` unpacked into `into`."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run_worker(code: str, tree: Path | None, job: dict, timeout: float | None = None) -> dict | None:
    """Runs IMPORTS + `code` (which prints one JSON object with "engine": ENGINE) in the old tree
    (on PYTHONPATH) or in the installed current one (tree None); None if it timed out."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    job = {**job, "legacy": tree is not None}
    try:
        proc = subprocess.run([sys.executable, "-c", IMPORTS + code, json.dumps(job)], cwd=tree or tempfile.gettempdir(),
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode:
        raise SystemExit(f"replay worker ({'baseline ' + str(tree) if tree else 'current'}) failed:\n{proc.stderr}")
    result = json.loads(proc.stdout)
    expected = tree or REPO
    if not Path(result["engine"]).resolve().is_relative_to(expected.resolve()):
        raise SystemExit(f"worker meant for {expected} ran the simulator of {result['engine']}")
    return result
