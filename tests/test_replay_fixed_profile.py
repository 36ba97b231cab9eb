"""Fixed planned from per-page write probabilities (replay.fixed_profile) against the uniform
model and against the simulator on skewed traces."""

from __future__ import annotations

import numpy as np
import pytest
from calm.replay import model
from calm.replay.cost import in_pages, parse_cost
from calm.replay.dirty import TraceSource
from calm.replay.fixed_profile import page_classes, plan_from_profile
from calm.replay.policies import Fixed
from calm.replay.simulator import simulate
from calm.replay.trace_map import map_trace
from replay_helpers import hot_set, write_trace

STEP = 0.1
F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), 4096, STEP)


@pytest.mark.parametrize("spec", ["mm1:rate=20,size=16KiB,sla=1s", "mm1:rate=10,size=16KiB,sla=1s"])
def test_one_class_is_the_uniform_model(spec):
    """Every page at the same p: the class recursion is the uniform model's (interior optimum
    and corner), up to its grid of bandwidths and whole steps."""
    cost = in_pages(parse_cost(spec), 4096, 1.0)
    M, P, B = 10_000, 0.001, 100.0
    plan = plan_from_profile(np.full(M, P), M, B, cost)
    uniform = model.optimal_fixed(M, P, B, cost)
    assert plan.cost == pytest.approx(uniform.cost, rel=2e-3)
    assert plan.n_clean == pytest.approx(uniform.n_clean, rel=2e-2)
    assert plan.bandwidth == pytest.approx(uniform.bandwidth, rel=5e-2)


def test_classes_keep_every_page():
    p = np.concatenate((np.full(100, 0.9), np.full(50, 1e-4), np.zeros(30)))
    probs, weights = page_classes(p, 1000)
    assert weights.sum() == 1000 and weights[0] == 1000 - 150 and probs[0] == 0
    assert (probs * weights).sum() == pytest.approx(p.sum())


@pytest.mark.parametrize("hot", [600, 2000])
def test_the_profile_plan_holds_on_a_hot_set_and_beats_the_uniform_plan(tmp_path, hot):
    """A hot set written every step in a RAM of cold pages: the uniform-p plan expects every page
    to come back at the mean rate and rushes; the profile plan sends the cold pages slowly while
    the service keeps its bandwidth, leaves the hot set for the downtime, and the simulation
    costs what it planned."""
    path = write_trace(tmp_path / "t.h5", hot_set(0, hot), n_steps=10, interval=STEP)
    src = TraceSource(map_trace(path), 16384)
    profile, uniform = Fixed(), Fixed(profile=False)
    by_profile = simulate(src, profile, 1000.0, F)
    by_mean = simulate(src, uniform, 1000.0, F)
    assert profile.describe()["planned_from"] == "per-page profile"
    assert uniform.describe()["planned_from"] == "uniform p"
    assert not by_profile.forced
    assert by_profile.cost == pytest.approx(profile.plan.cost * STEP, rel=0.05)
    assert by_profile.cost < 0.5 * by_mean.cost


def test_the_hindsight_sweep_is_an_oracle_row_not_fixed():
    from calm.replay.outputs import format_table, with_oracle_rows
    from calm.replay.runner import run_replay

    report = run_replay(None, ["256MiB@256Mbit"], ["calm", "fixed"], uniform_p=0.0005, sweep_points=6,
                        max_time_s=300)
    rows = report.table()
    assert [r["algorithm"] for r in rows] == ["calm", "fixed"]  # results.csv: the policies only
    shown = with_oracle_rows(rows, report.to_dict()["scenarios"])
    assert [r["algorithm"] for r in shown] == ["calm", "fixed", "oracle"]
    assert shown[-1]["cost_s"] == min(report.scenarios[0].sweep.simulated_cost)
    assert shown[-1]["cost_s"] <= rows[1]["cost_s"]  # hindsight is never worse than the plan
    line = format_table(shown).splitlines()[-1]
    assert "oracle" in line and "hindsight bound, not a policy" in line
