"""The uniform analytic model: closed forms, the optimal fixed bandwidth, CALM's schedule."""

from __future__ import annotations

import numpy as np
import pytest

from calm.core.errors import CalmError
from calm.replay import model
from calm.replay.cost import in_pages, parse_cost

M, P, B = 10_000, 0.001, 100.0
# Interior optimum (N* < M): a service using 80 % of the link.
HEAVY = in_pages(parse_cost("mm1:rate=20,size=16KiB,sla=1s"), 4096, 1.0)
# The optimum at the corner N* = Nmax = q M.
LIGHT = in_pages(parse_cost("mm1:rate=15,size=16KiB,sla=1s"), 4096, 1.0)
COSTS = {"heavy": HEAVY, "light": LIGHT}


def test_clean_pages_follow_the_recursion():
    b, n = 20.0, 0.0
    for t in range(1, 200):
        n = (1 - P) * (n + b)
        assert model.clean_after(t, b, P) == pytest.approx(n, rel=1e-12)


def test_time_between_inverts_clean_after():
    b = 20.0
    for n1, n2 in [(0, 5000), (1000, 15000), (0, 19000)]:
        t = model.time_between(n1, n2, b, P)
        assert model.clean_after(t, b, P, n1) == pytest.approx(n2, rel=1e-9)
    assert np.isinf(model.time_between(0, model.n_inf(b, P), b, P))  # the asymptote is never reached
    assert np.isinf(model.time_between(0, 30000, b, P))
    assert model.time_between(0, 100, 20.0, 0.0) == pytest.approx(5.0)  # p = 0: plain copying
    # additivity, which CALM's per-step sum relies on
    assert model.time_between(0, 700, b, P) == pytest.approx(
        model.time_between(0, 300, b, P) + model.time_between(300, 700, b, P))


@pytest.mark.parametrize("name", ["heavy", "light"])
def test_best_stop_minimises_over_n(name):
    F = COSTS[name]
    for b in (6.0, 12.0, 30.0):
        n_star = float(model.best_stop(b, M, P, B, F))
        top = min(model.max_clean(M, P), model.n_inf(b, P) - 1e-6)  # Nmax: q M clean pages at most
        assert n_star <= top
        ns = np.linspace(0, top, 20001)
        brute = model.fixed_cost(b, ns, M, P, B, F)
        assert float(model.fixed_cost(b, n_star, M, P, B, F)) <= brute.min() * (1 + 1e-9)


@pytest.mark.parametrize("name", ["heavy", "light"])
def test_optimal_fixed_beats_every_bandwidth(name):
    F = COSTS[name]
    plan = model.optimal_fixed(M, P, B, F)
    bs = np.linspace(0.01, B, 50001)
    assert plan.cost <= model.fixed_cost_curve(bs, M, P, B, F).min() * (1 + 1e-9)
    assert plan.cost == pytest.approx(plan.downtime + float(HEAVY(B - plan.bandwidth) if name == "heavy"
                                                            else LIGHT(B - plan.bandwidth)) * plan.precopy_time)
    assert plan.downtime == pytest.approx((M - plan.n_clean) / B)


def test_pure_stop_and_copy_when_precopy_never_pays():
    always_violated = in_pages(parse_cost("mm1:rate=1000,size=16KiB,sla=1s"), 4096, 1.0)  # F = 1
    plan = model.optimal_fixed(M, P, B, always_violated)
    assert (plan.bandwidth, plan.n_clean, plan.cost) == (0.0, 0.0, M / B)
    calm = model.calm_plan(M, P, B, always_violated)
    assert calm.n_clean == 0 and calm.cost == pytest.approx(M / B)


@pytest.mark.parametrize("p", [0.0002, 0.001, 0.004])
@pytest.mark.parametrize("name", ["heavy", "light"])
def test_calm_never_costs_more_than_fixed(name, p):
    F = COSTS[name]
    calm = model.calm_plan(M, p, B, F)
    fixed = model.optimal_fixed(M, p, B, F)
    assert calm.cost <= fixed.cost * (1 + 1e-9)
    assert calm.cost == pytest.approx(calm.step_cost.sum() + (M - calm.n_clean) / B)


@pytest.mark.parametrize("name", ["heavy", "light"])
def test_calm_schedule_is_non_decreasing(name):
    calm = model.calm_plan(M, P, B, COSTS[name])
    assert len(calm.bandwidth) > 100
    assert np.all(np.diff(calm.bandwidth) >= -1e-6 * calm.bandwidth[1:])  # low first, higher later
    assert np.all(np.diff(calm.step_cost) >= -1e-12)  # c_i* non-decreasing: the threshold stop is optimal
    assert calm.bandwidth[-1] > 1.2 * calm.bandwidth[0]


def test_calm_step_is_the_minimum_over_bandwidths():
    i = np.array([0, 1000, 2500, 5000])
    k = np.ones_like(i)
    b_star, c_star = model.best_step(i, k, P, B, HEAVY)
    for j in range(len(i)):
        lo = P * (i[j] + 1) / (1 - P)
        grid = np.linspace(lo, B, 200001)[1:]
        brute = model.step_cost(i[j], 1, grid, P, B, HEAVY)
        assert c_star[j] <= brute.min() * (1 + 1e-7)
        assert abs(b_star[j] - grid[np.argmin(brute)]) < 1e-2 * B
        b1, c1 = model.best_step_one(float(i[j]), 1.0, P, B, HEAVY)  # the online variant agrees
        assert c1 == pytest.approx(c_star[j], rel=1e-6)


@pytest.mark.parametrize("name", ["heavy", "light"])
def test_batching_converges_to_per_page(name):
    F = COSTS[name]
    exact = model.calm_plan(M, P, B, F, batch=1).cost
    errors = [abs(model.calm_plan(M, P, B, F, batch=k).cost - exact) for k in (1000, 100, 10)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4 * exact


def test_slide_example_numbers_are_consistent():
    """The slides' example (M=10,000, p=0.001, B=100): CALM cheaper than the best fixed bandwidth."""
    fixed = model.optimal_fixed(M, P, B, LIGHT)
    calm = model.calm_plan(M, P, B, LIGHT)
    assert 0 < fixed.bandwidth < B
    assert calm.bandwidth[0] < fixed.bandwidth < calm.bandwidth[-1]
    assert calm.cost < fixed.cost


def test_bad_model_parameters():
    with pytest.raises(CalmError, match="p=1"):
        model.optimal_fixed(M, 1.0, B, HEAVY)
    with pytest.raises(CalmError, match="bandwidth"):
        model.calm_plan(M, P, 0.0, HEAVY)
    with pytest.raises(CalmError, match="batch"):
        model.calm_plan(M, P, B, HEAVY, batch=0)


@pytest.mark.parametrize("name", ["heavy", "light"])
def test_calm_plan_steps_equal_the_full_search(name):
    """calm_plan searches between anchor steps only; it must find the same per-step minima."""
    F = COSTS[name]
    plan = model.calm_plan(M, P, B, F)
    idx = np.random.default_rng(0).choice(len(plan.start), 500, replace=False)
    b_full, c_full = model.best_step(plan.start[idx], plan.size[idx], P, B, F)
    assert np.allclose(plan.step_cost[idx], c_full, rtol=1e-9, atol=0)
    assert np.allclose(plan.bandwidth[idx], b_full, rtol=1e-3)


def test_two_class_time_follows_its_recursion():
    """time_between with p_sent: N(t+1) = (1 - p) N(t) + (1 - p_sent) b; p_sent = p is the model."""
    b, p_sent = 20.0, 0.3
    n, t = 0.0, 0
    while n < 8000:
        n, t = (1 - P) * n + (1 - p_sent) * b, t + 1
    assert model.time_between(0, n, b, P, p_sent) == pytest.approx(t, rel=1e-9)
    assert model.n_inf(b, P, p_sent) == pytest.approx((1 - p_sent) * b / P)
    assert model.time_between(0, 500, b, P, P) == model.time_between(0, 500, b, P)
    assert model.time_between(0, 100, 20.0, 0.0, 0.5) == pytest.approx(10.0)  # p = 0: gain (1 - p_sent) b
    b1, c1 = model.best_step_one(5000.0, 1.0, P, B, HEAVY, P)
    assert (b1, c1) == model.best_step_one(5000.0, 1.0, P, B, HEAVY)
    assert model.best_step_one(10.0, 1.0, P, B, HEAVY, 1.0)[1] == np.inf  # sent pages never stay clean


def test_equally_free_bandwidths_resolve_to_the_fastest():
    """A measured F that is exactly 0 above some service bandwidth makes every b up to B - that
    bandwidth free: the step picks the largest of them, not the slowest (which would crawl)."""
    from calm.replay.cost import table_cost

    # 4 KiB pages, 1 s steps: 100 pages/step = 3.2768 Mbit/s. F is 0 for Bs >= 40 pages/step.
    zero_above = 40 * 4096 * 8
    free = in_pages(table_cost([zero_above / 2, zero_above], [0.5, 0.0]), 4096, 1.0)
    b, c = model.best_step_one(5000.0, 1.0, P, B, free)
    assert c == 0.0
    assert b == pytest.approx(B - 40, rel=1e-3)
    fixed = model.optimal_fixed(M, P, B, free)
    assert fixed.bandwidth == pytest.approx(B - 40, rel=1e-3)


def test_negligible_cost_differences_resolve_to_the_fastest():
    """The default M/M/1 cost on a 1 Gbit/s link: F(B - b) is e^-100 at a crawl and still far
    below a page of downtime at half the link. The step takes the fastest bandwidth whose cost is
    within NEGLIGIBLE_PAGES / B of the cheapest, so its cost is the literal minimum's in every
    sense that reaches the total, and the migration does not crawl (it did: 2,148 0.2 s steps
    for 512 MiB before this rule, cut by the time limit)."""
    step = 0.2
    F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), 4096, step)
    B1 = 1e9 * step / 8 / 4096  # 6103.5 pages per step
    grid = np.linspace(1.0, B1, 200_001)
    literal = model.step_cost(50_000.0, 1.0, grid, 1e-4, B1, F)
    b, c = model.best_step_one(50_000.0, 1.0, 1e-4, B1, F)
    assert grid[np.argmin(literal)] < 0.01 * B1  # the literal argmin crawls
    assert c <= literal.min() + model.NEGLIGIBLE_PAGES / B1
    assert b > 0.4 * B1
    # and the same choice through the vectorised path that `calm model` uses
    bv, cv = model.best_step(np.array([50_000.0]), np.array([1.0]), 1e-4, B1, F)
    assert bv[0] > 0.4 * B1 and cv[0] <= literal.min() + model.NEGLIGIBLE_PAGES / B1


def test_the_slides_example_stops_at_q_m_with_downtime_left():
    """The slides' example priced with calm's default cost (20 ms time unit) has its optimum at
    the corner: both plans stop at Nmax = floor(q M) clean pages, leaving p M pages (0.002 s) for
    the copy phase, not the zero downtime a clip at M promised."""
    light = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), 4096, 0.02)
    n_max = model.max_clean(M, P)
    fixed = model.optimal_fixed(M, P, B, light)
    calm = model.calm_plan(M, P, B, light)
    assert fixed.n_clean == pytest.approx(n_max) and calm.n_clean == int(np.floor(n_max))
    assert fixed.downtime == pytest.approx(P * M / B) and calm.downtime == pytest.approx(P * M / B)
    for k in (7, 100):  # batching stops at the same corner
        assert model.calm_plan(M, P, B, light, batch=k).n_clean == int(np.floor(n_max))
