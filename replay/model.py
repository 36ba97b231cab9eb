"""The uniform analytic model (docs/model.md, sections 2 and 3): fixed bandwidth and CALM.

Units: memory in pages, time in abstract *time units*, bandwidths in pages per time unit; `p` is
the probability that one page is written during one time unit. `F` is a cost function of the
service bandwidth in the same pages-per-unit (see `replay.cost.in_pages`). Costs are in time
units of violated SLA (multiply by the unit's seconds to get seconds).

Convention (copy-then-dirty): in each unit `b` not-clean pages are copied, then every clean page
is written with probability p, so N(t+1) = q (N(t) + b) with q = 1 - p. Everything below is
vectorised over bandwidths (numpy); CALM's per-step optimisation is vectorised over steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calm.core.errors import CalmError
from calm.replay.cost import PagesCost

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
# How close to the asymptote Ninf a fixed-bandwidth migration may plan to stop (pages). Only
# matters when F(B - b) == 0 (free pre-copy), where the exact optimum N = Ninf takes forever.
_ASYMPTOTE_MARGIN = 0.5


def _check(p: float, bandwidth: float, n_pages: int | None = None) -> None:
    if not 0.0 <= p < 1.0:
        raise CalmError(f"dirtying probability p={p:g} must be in [0, 1)")
    if not bandwidth > 0:
        raise CalmError(f"bandwidth B={bandwidth:g} pages per time unit must be positive")
    if n_pages is not None and n_pages < 1:
        raise CalmError(f"the memory must have at least one page (M={n_pages})")


def n_inf(b, p: float, p_sent: float | None = None):
    """Fixed point of N(t+1) = q (N(t) + b): q b / p (infinite when p = 0).

    With `p_sent` (the two-class reading used online, see `time_between`): (1 - p_sent) b / p."""
    b = np.asarray(b, dtype=float)
    if p == 0:
        return np.full_like(b, np.inf)
    return (1.0 - (p if p_sent is None else p_sent)) * b / p


def clean_after(t, b, p: float, n1=0.0):
    """Expected clean pages after t units at bandwidth b from n1: Ninf - (Ninf - n1) q^t.

    Ignores the cap N <= M (the model's assumption that b not-clean pages are always there)."""
    t, b = np.asarray(t, dtype=float), np.asarray(b, dtype=float)
    if p == 0:
        return n1 + b * t
    ninf = n_inf(b, p)
    return ninf - (ninf - n1) * (1.0 - p) ** t


def time_between(n1, n2, b, p: float, p_sent: float | None = None):
    """T(n1 -> n2; b) = ln((Ninf - n2)/(Ninf - n1)) / ln q; +inf when n2 >= Ninf.

    Written as log1p(-(n2 - n1)/(Ninf - n1)) / log1p(-p) so that small p keeps its precision;
    p = 0 gives the limit (n2 - n1) / b.

    `p_sent` (default p) is the chance that a page sent in a step is written in that same step,
    `p` the chance that a page clean at the step's start is: N(t+1) = (1 - p) N(t) +
    (1 - p_sent) b, Ninf = (1 - p_sent) b / p. The uniform model is p_sent = p; online CALM
    measures the two apart because on a skewed workload the pages still to send (recently
    written) are hotter than the pages already clean (see `replay.policies.calm`)."""
    n1, n2, b = (np.asarray(x, dtype=float) for x in (n1, n2, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        if p == 0:
            gain = b * (1.0 - (0.0 if p_sent is None else p_sent))
            return np.where(gain > 0, (n2 - n1) / gain, np.inf)
        gap = n_inf(b, p, p_sent) - n1
        frac = (n2 - n1) / gap
        t = np.log1p(-np.minimum(frac, 1.0)) / np.log1p(-p)
        return np.where((frac < 1.0) & (gap > 0), t, np.inf)


def max_clean(n_pages: int, p: float) -> float:
    """q M: the most clean pages copy-then-dirty can expect. The page copied last may be written
    in the same unit, so even a step that sends every dirty page leaves about p M of them dirty
    (docs/model.md, section 2: Nmax)."""
    return (1.0 - p) * n_pages


def best_stop(b, n_pages: int, p: float, bandwidth: float, cost: PagesCost):
    """N*(b) = clip(Ninf(b) - B F(B - b) / (-ln q), 0, Nmax), Nmax = min(q M, Ninf(b)): where one
    more clean page stops paying, or the most clean pages there can be."""
    b = np.asarray(b, dtype=float)
    f = cost(bandwidth - b)
    if p == 0:  # cost linear in N: all pages if copying one is cheaper than sending it in downtime
        return np.where(f / np.maximum(b, 1e-300) < 1.0 / bandwidth, float(n_pages), 0.0)
    back = np.maximum(bandwidth * f / -np.log1p(-p), _ASYMPTOTE_MARGIN)
    return np.clip(n_inf(b, p) - back, 0.0, max_clean(n_pages, p))


def fixed_cost(b, n, n_pages: int, p: float, bandwidth: float, cost: PagesCost):
    """C(b, N) = F(B - b) T(0 -> N; b) + (M - N) / B (pre-copy cost + downtime)."""
    b, n = np.asarray(b, dtype=float), np.asarray(n, dtype=float)
    t = time_between(0.0, n, b, p)
    pre = np.where(n > 0, cost(bandwidth - b) * t, 0.0)
    return pre + (n_pages - n) / bandwidth


def fixed_cost_curve(b, n_pages: int, p: float, bandwidth: float, cost: PagesCost):
    """Cost of a fixed-bandwidth migration at each b, each with its best stop point."""
    return fixed_cost(b, best_stop(b, n_pages, p, bandwidth, cost), n_pages, p, bandwidth, cost)


@dataclass
class FixedPlan:
    """The optimal fixed-bandwidth migration: bandwidth, stop point and its cost split."""

    bandwidth: float  # b, pages per unit (0 when pure stop-and-copy is best)
    n_clean: float  # N, clean pages when pre-copy stops
    cost: float
    precopy_time: float
    downtime: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# Costs closer than this many pages' worth of downtime (1/B each) count as equal. F of an M/M/1
# service with bandwidth to spare is astronomically small (e^-100 at 1 Gbit/s for the default
# cost), so c_i(b) is 1e-48 at a crawl and 1e-25 at half the link: both nothing, yet the
# literal argmin is the crawl, and a 512 MiB migration then outlasts any time limit. Summed over
# even 2^30 steps, differences below this change the total by under a millionth of one page's
# downtime, far below what the float total of (M - N)/B can hold. Where every step is that cheap
# CALM's schedule is flat at the band's fast end (measured: `calm model --ram 1GiB --bandwidth
# 1Gbit --time-unit 100ms --p 0.0005` gives 1847.5 -> 1845.6 pages per unit, drifting down 0.1%
# as T(i -> i+1) grows) instead of "low first, higher later", and costs what Fixed costs.
NEGLIGIBLE_PAGES = 1e-15


_TIE_ZOOM = np.linspace(0.0, 1.0, 33)


def _tie_limit(cost, pages, bandwidth: float):
    """The highest cost that still ties with `cost` for a step gaining `pages` clean pages."""
    return np.asarray(cost, dtype=float) + NEGLIGIBLE_PAGES * np.asarray(pages, dtype=float) / bandwidth


def _fastest_as_cheap(f, b_best, c_best, b_max, pages, bandwidth: float, rounds: int = 6):
    """The largest b in [b_best, b_max] with f(b) <= c_best + NEGLIGIBLE_PAGES * pages / B.

    Called after the exact minimisation, with its (b_best, c_best): the cost is unimodal, so it
    does not fall right of its minimum, and zooming grids (33 points, `rounds` times: 1e-9 of
    the interval for 6) find where it leaves the tie band. Vectorised over arrays of steps; `f`
    takes b of shape (..., points). Returns (b, f(b))."""
    b_best, c_best = np.asarray(b_best, dtype=float), np.asarray(c_best, dtype=float)
    limit = _tie_limit(c_best, pages, bandwidth)[..., None]
    lo = b_best.copy()
    hi = np.broadcast_to(np.asarray(b_max, dtype=float), b_best.shape).copy()
    b, c = b_best, c_best
    for _ in range(rounds):
        grid = lo[..., None] + (hi - lo)[..., None] * _TIE_ZOOM
        cost = f(grid)
        ok = cost <= limit
        ok[..., 0] = True  # b_best itself is in the band
        j = _TIE_ZOOM.size - 1 - np.argmax(np.flip(ok, axis=-1), axis=-1)
        b = np.take_along_axis(grid, j[..., None], axis=-1)[..., 0]
        c = np.take_along_axis(cost, j[..., None], axis=-1)[..., 0]
        lo, hi = b, np.take_along_axis(grid, np.minimum(j + 1, _TIE_ZOOM.size - 1)[..., None], axis=-1)[..., 0]
    infeasible = ~np.isfinite(c_best)
    return np.where(infeasible, b_best, b), np.where(infeasible, c_best, c)


def _last_argmin(values: np.ndarray, axis: int | None = None):
    """argmin that picks the *largest* bandwidth among equal costs.

    Where F(B - b) is exactly 0 over a range of b (a measured cost table that drops to 0 above
    some service bandwidth), every b in that range costs nothing and the plain argmin would pick
    the slowest, so the migration would crawl until a time limit. Among equally cheap
    bandwidths the fastest reaches the stop point soonest at no extra cost.
    """
    flipped = np.flip(values, axis=axis if axis is not None else None)
    j = np.argmin(flipped, axis=axis)
    last = (values.shape[axis] if axis is not None else values.size) - 1
    return last - j if axis is not None else int(last - j)


def optimal_fixed(n_pages: int, p: float, bandwidth: float, cost: PagesCost,
                  grid: int = 2048) -> FixedPlan:
    """Minimises C(b, N*(b)) over b in (0, B]: a log+linear grid, then golden-section refinement."""
    _check(p, bandwidth, n_pages)
    B = float(bandwidth)
    bs = np.unique(np.concatenate((np.geomspace(B * 1e-7, B, grid), np.linspace(B / grid, B, grid))))
    cs = fixed_cost_curve(bs, n_pages, p, B, cost)
    i = _last_argmin(cs)
    lo, hi = bs[max(i - 1, 0)], bs[min(i + 1, len(bs) - 1)]
    f = lambda x: float(fixed_cost_curve(x, n_pages, p, B, cost))  # noqa: E731
    b_best = _golden_scalar(f, lo, hi, iterations=60)
    if f(b_best) > cs[i]:
        b_best = float(bs[i])
    b_best = float(_fastest_as_cheap(lambda x: fixed_cost_curve(x, n_pages, p, B, cost),
                                     np.array([b_best]), np.array([f(b_best)]), B, n_pages, B)[0][0])
    n = float(best_stop(b_best, n_pages, p, B, cost))
    c = f(b_best)
    if c >= n_pages / B or n <= 0:  # pre-copy never pays: stop-and-copy at once
        return FixedPlan(0.0, 0.0, n_pages / B, 0.0, n_pages / B)
    return FixedPlan(b_best, n, c, float(time_between(0.0, n, b_best, p)), (n_pages - n) / B)


def _golden_scalar(f, lo: float, hi: float, iterations: int) -> float:
    a, b = lo, hi
    x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(iterations):
        if f1 <= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - _GOLDEN * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + _GOLDEN * (b - a)
            f2 = f(x2)
    return x1 if f1 <= f2 else x2


# -- CALM --------------------------------------------------------------------------------------

# Candidate bandwidths per step: fractions of the feasible interval (lo, B], log-spaced so that
# the low bandwidths of early steps are resolved, then refined by golden-section search.
_CALM_GRID = np.geomspace(1e-6, 1.0, 40)
_CALM_REFINE = 36
_CALM_BLOCK = 16384


def step_cost(i, k, b, p: float, bandwidth: float, cost: PagesCost, p_sent: float | None = None):
    """c_i(b) = F(B - b) T(i -> i + k; b): cost of gaining k clean pages from i at bandwidth b."""
    return cost(bandwidth - b) * time_between(i, i + k, b, p, p_sent)


def best_step(i, k, p: float, bandwidth: float, cost: PagesCost,
              bracket: tuple[np.ndarray, np.ndarray] | None = None,
              refine: int = _CALM_REFINE) -> tuple[np.ndarray, np.ndarray]:
    """(b*, c*) per step, vectorised over the arrays i (clean pages) and k (pages in the step).

    b ranges over (p (i + k) / q, B], where i + k clean pages are reachable; steps where even B
    cannot reach them get c* = inf. A grid over the interval brackets the minimum, a vectorised
    golden-section search refines it (c_i is unimodal in b for the F we use: F(B - b) rises with
    b while T falls)."""
    i, k = np.asarray(i, dtype=float), np.asarray(k, dtype=float)
    lo = p * (i + k) / (1.0 - p)
    if bracket is None:
        span = np.maximum(bandwidth - lo, 0.0)
        grid = lo[:, None] + span[:, None] * _CALM_GRID[None, :]
        c = step_cost(i[:, None], k[:, None], grid, p, bandwidth, cost)
        j = _last_argmin(c, axis=1)
        rows = np.arange(len(i))
        a = grid[rows, np.maximum(j - 1, 0)]
        a = np.where(j == 0, lo, a)
        z = grid[rows, np.minimum(j + 1, grid.shape[1] - 1)]
        best_b, best_c = grid[rows, j], c[rows, j]
    else:  # the caller knows where the minimum is (CALM's monotone schedule)
        a, z = np.maximum(bracket[0], lo), np.maximum(bracket[1], lo)
        best_b = np.where(z > lo, z, bandwidth)
        best_c = step_cost(i, k, best_b, p, bandwidth, cost)
    x1, x2 = z - _GOLDEN * (z - a), a + _GOLDEN * (z - a)
    f1, f2 = step_cost(i, k, x1, p, bandwidth, cost), step_cost(i, k, x2, p, bandwidth, cost)
    for _ in range(refine):
        left = f1 < f2  # ties go to the larger bandwidth (see _last_argmin)
        z = np.where(left, x2, z)
        a = np.where(left, a, x1)
        x1n = np.where(left, z - _GOLDEN * (z - a), x2)
        x2n = np.where(left, x1, a + _GOLDEN * (z - a))
        xn = np.where(left, x1n, x2n)
        fn = step_cost(i, k, xn, p, bandwidth, cost)
        f1, f2 = np.where(left, fn, f2), np.where(left, f1, fn)
        x1, x2 = x1n, x2n
    xb, fb = np.where(f1 <= f2, x1, x2), np.minimum(f1, f2)
    better = fb < best_c
    b_min, c_min = np.where(better, xb, best_b), np.where(better, fb, best_c)
    # Only steps whose tie band is wider than the first zoom cell can gain a faster bandwidth
    # worth having (a narrower band ties anyway); most steps of a costly F have none.
    probe = b_min + (bandwidth - b_min) * _TIE_ZOOM[1]
    wide = np.flatnonzero(step_cost(i, k, probe, p, bandwidth, cost)
                          <= _tie_limit(c_min, k, bandwidth))
    if wide.size:
        iw, kw = i[wide, None], k[wide, None]
        b_min[wide], c_min[wide] = _fastest_as_cheap(
            lambda x: step_cost(iw, kw, x, p, bandwidth, cost), b_min[wide], c_min[wide],
            bandwidth, k[wide], bandwidth)
    return b_min, c_min


_ONE_GRID = np.geomspace(1e-7, 1.0, 96)
_ONE_ZOOM = np.linspace(0.0, 1.0, 49)


def best_step_one(i: float, k: float, p: float, bandwidth: float, cost: PagesCost,
                  p_sent: float | None = None) -> tuple[float, float]:
    """(b*, c*) for one step, for online use (CALM in the simulator decides once per step).

    Same bracket as `best_step` but refined by two zooming grids (three vectorised evaluations)
    instead of a golden-section loop: a scalar loop would cost a millisecond per decision.
    `p_sent` as in `time_between` (default p): k more pages are reachable only for b above
    p (i + k) / (1 - p_sent); c* = inf when even B cannot reach them."""
    survive = 1.0 - (p if p_sent is None else p_sent)
    if survive <= 0:
        return bandwidth, float("inf")
    lo = p * (i + k) / survive
    if lo >= bandwidth:
        return bandwidth, float("inf")
    grid = lo + (bandwidth - lo) * _ONE_GRID
    for _ in range(3):
        c = step_cost(i, k, grid, p, bandwidth, cost, p_sent)
        j = _last_argmin(c)
        a, z = grid[max(j - 1, 0)] if j else lo, grid[min(j + 1, len(grid) - 1)]
        best = (float(grid[j]), float(c[j]))
        right = float(c[j + 1]) if j + 1 < len(c) else np.inf
        grid = a + (z - a) * _ONE_ZOOM[1:]
    if j + 1 < len(c) and right > _tie_limit(best[1], k, bandwidth):
        return best  # the cost already rises out of the tie band at the next point of the finest grid
    b, c = _fastest_as_cheap(lambda x: step_cost(i, k, x, p, bandwidth, cost, p_sent),
                             np.array(best[0]), np.array(best[1]), bandwidth, k, bandwidth, rounds=3)
    return float(b), float(c)


@dataclass
class CalmPlan:
    """CALM's per-step schedule and totals (uniform model)."""

    batch: int
    start: np.ndarray  # clean pages at the start of each pre-copy step
    size: np.ndarray  # pages gained by each step (the batch, last one shorter)
    bandwidth: np.ndarray  # b_i*, pages per unit
    step_cost: np.ndarray  # c_i(b_i*)
    step_time: np.ndarray  # T(i -> i + k; b_i*)
    n_clean: int  # N, clean pages when CALM moves to the copy phase
    cost: float
    precopy_time: float
    downtime: float
    extra: dict = field(default_factory=dict)

    def to_dict(self, max_points: int = 2000) -> dict:
        """JSON-ready; the schedule is thinned to at most `max_points` points."""
        idx = np.unique(np.linspace(0, len(self.start) - 1, min(max_points, len(self.start))).astype(int)) \
            if len(self.start) else np.empty(0, int)
        t0 = np.concatenate(([0.0], np.cumsum(self.step_time)[:-1])) if len(self.start) else np.empty(0)
        return {"batch": self.batch, "n_clean": self.n_clean, "cost": self.cost,
                "precopy_time": self.precopy_time, "downtime": self.downtime,
                "schedule": {"time": t0[idx].tolist(), "clean": self.start[idx].tolist(),
                             "bandwidth": self.bandwidth[idx].tolist(),
                             "step_cost": self.step_cost[idx].tolist()}}


_ANCHOR_EVERY = 32
_BRACKETED_REFINE = 24


def _block_steps(i, k, p, bandwidth, cost):
    """best_step for consecutive steps, using that b* is non-decreasing in i (docs/model.md, section 3; tested).

    Every 32nd step (and the last) gets the full grid + golden search; the steps between two
    such anchors search only [b*(anchor before), b*(anchor after)] by golden section, which
    costs a third of the full search. Where that bracket is empty or wrong the result is still
    a feasible bandwidth, never below the true minimum cost (tests compare with the full search)."""
    n = len(i)
    anchors = np.unique(np.append(np.arange(0, n, _ANCHOR_EVERY), n - 1))
    b_anchor, c_anchor = best_step(i[anchors], k[anchors], p, bandwidth, cost)
    pos = np.searchsorted(anchors, np.arange(n), side="right") - 1
    nxt = np.minimum(pos + 1, len(anchors) - 1)
    b, c = best_step(i, k, p, bandwidth, cost, bracket=(b_anchor[pos], b_anchor[nxt]),
                     refine=_BRACKETED_REFINE)
    b[anchors], c[anchors] = b_anchor, c_anchor
    return b, c


def calm_plan(n_pages: int, p: float, bandwidth: float, cost: PagesCost, batch: int = 1) -> CalmPlan:
    """CALM in the uniform model: per-step optimal bandwidths and the stop rule.

    Step j moves from i_j = j*batch to i_j + k_j clean pages (k_j = batch, the last one shorter)
    at b_j* = argmin c. CALM moves to the copy phase at the first step with c_j* >= k_j / B (k more
    clean pages save k/B of downtime); c* is non-decreasing in i, so that threshold rule is
    optimal, and steps are evaluated block by block until it fires (no work past the stop point).
    """
    _check(p, bandwidth, n_pages)
    if batch < 1:
        raise CalmError(f"CALM batch must be at least 1 page (got {batch})")
    starts, sizes, bs, cs = [], [], [], []
    top = int(np.floor(max_clean(n_pages, p)))  # Nmax: no step can reach beyond q M
    n_steps = -(-top // batch)
    stop = n_steps
    for j0 in range(0, n_steps, _CALM_BLOCK):
        j = np.arange(j0, min(j0 + _CALM_BLOCK, n_steps), dtype=np.int64)
        i = j * batch
        k = np.minimum(batch, top - i)
        b, c = _block_steps(i, k, p, bandwidth, cost)
        over = np.flatnonzero(c >= k / bandwidth)
        if over.size:
            cut = int(over[0])
            starts.append(i[:cut]), sizes.append(k[:cut]), bs.append(b[:cut]), cs.append(c[:cut])
            stop = j0 + cut
            break
        starts.append(i), sizes.append(k), bs.append(b), cs.append(c)
    start = np.concatenate(starts) if starts else np.empty(0, np.int64)
    size = np.concatenate(sizes) if sizes else np.empty(0, np.int64)
    b = np.concatenate(bs) if bs else np.empty(0)
    c = np.concatenate(cs) if cs else np.empty(0)
    n_clean = int(min(stop * batch, top))
    t = time_between(start, start + size, b, p) if len(start) else np.empty(0)
    downtime = (n_pages - n_clean) / bandwidth
    return CalmPlan(batch, start, size, b, c, t, n_clean, float(c.sum() + downtime),
                    float(t.sum()), downtime)
