"""The simulator against the uniform model's closed forms, on synthetic uniform workloads.

Each check averages independent runs (seeds) and allows 4 standard errors of the mean plus the
simulator's whole-step granularity where it applies."""

from __future__ import annotations

import numpy as np
import pytest

from calm.replay import model
from calm.replay.cost import in_pages, parse_cost
from calm.replay.dirty import UniformSource
from calm.replay.policies import Calm, Fixed
from calm.replay.simulator import simulate

M, P, B = 10_000, 0.001, 100.0
F = in_pages(parse_cost("mm1:rate=20,size=16KiB,sla=1s"), 4096, 1.0)  # interior optimum, N* < M
SEEDS = range(10)


def runs(make_policy, max_steps=None):
    return [simulate(UniformSource(M, P, seed=s), make_policy(), B, F, max_steps=max_steps) for s in SEEDS]


def agree(samples, expected, slack=0.0):
    samples = np.asarray(samples, dtype=float)
    se = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - expected) <= 4 * se + slack, (samples.mean(), expected, se)


def test_clean_pages_and_time_to_n_follow_the_closed_forms():
    b = 5.0  # Ninf = 4995 < M: b not-clean pages are always there, as the model assumes
    results = runs(lambda: Fixed(b, n_clean=None, precopy_time=None), max_steps=3000)
    clean = np.array([M - r.dirty for r in results])  # clean pages after steps 1..3000
    for t in (10, 100, 500, 1000, 3000):
        agree(clean[:, t - 1], float(model.clean_after(t, b, P)), slack=0.5)
    for n in (1000, 3000, 4500):
        hit = [int(np.argmax(c >= n)) + 1 for c in clean]
        agree(hit, float(model.time_between(0, n, b, P)), slack=1.0)


def test_fixed_cost_at_a_given_stop_matches():
    b, t = 5.0, 600
    results = runs(lambda: Fixed(b, n_clean=None, precopy_time=t))
    assert all(r.precopy_time == t for r in results)
    expected = float(model.fixed_cost(b, model.clean_after(t, b, P), M, P, B, F))
    agree([r.cost for r in results], expected)


def test_optimal_fixed_and_calm_match_the_model_and_calm_is_cheaper():
    fixed_plan = model.optimal_fixed(M, P, B, F)
    calm_plan = model.calm_plan(M, P, B, F)
    assert 0 < fixed_plan.n_clean < M and 0 < calm_plan.n_clean < M
    fixed = [r.cost for r in runs(Fixed)]
    calm_oracle = [r.cost for r in runs(lambda: Calm(p=P))]
    calm_online = [r.cost for r in runs(Calm)]
    agree(fixed, fixed_plan.cost, slack=2e-3 * fixed_plan.cost)
    agree(calm_oracle, calm_plan.cost, slack=2e-3 * calm_plan.cost)
    assert np.mean(calm_online) == pytest.approx(calm_plan.cost, rel=5e-3)
    assert np.mean(calm_oracle) < np.mean(fixed)
    assert np.mean(calm_online) < np.mean(fixed)


def test_calm_schedule_in_the_simulator_rises():
    r = simulate(UniformSource(M, P, seed=1), Calm(p=P), B, F)
    rate = r.rate_bps
    assert len(rate) > 100
    head, tail = rate[: len(rate) // 10].mean(), rate[-len(rate) // 10:].mean()
    assert tail > 1.2 * head


def test_at_the_corner_the_clean_count_saturates_at_q_m():
    """The model's corner (docs/model.md, section 2): once a step can send every dirty page, the
    clean count hovers at q M, not M, because the pages sent last are written in the same step.
    The best stop of a cheap fixed bandwidth is therefore Nmax = q M (an earlier model said M:
    zero downtime, unreachable), and a migration told to stop there gets there."""
    def light(bs):  # a service that hardly notices a migration below 80 pages a step
        return np.exp(-np.asarray(bs, dtype=float) / 3.0)

    b = 40.0  # above the ~10 +- 3 pages a step writes: every step sends all dirty pages once there
    n_max = float(model.best_stop(b, M, P, B, light))
    assert n_max == pytest.approx(model.max_clean(M, P)) and n_max < M
    horizon = 1500  # the corner is reached after about M / b = 250 steps
    results = runs(lambda: Fixed(b, n_clean=None, precopy_time=horizon), max_steps=horizon)
    saturated = [np.mean(M - r.dirty[600:]) for r in results]
    agree(saturated, n_max)
    stopped = runs(lambda: Fixed(b, n_clean=n_max, precopy_time=None), max_steps=horizon)
    assert all(not r.forced and r.stop_reason == "Fixed: planned clean pages reached" for r in stopped)
    # it stops within a few steps of the corner, on a draw of at most p M dirty pages
    assert all(r.precopy_time <= 2 * M / b for r in stopped)
    assert all(0 < r.downtime * B <= P * M for r in stopped)
