"""The best fixed bandwidth and stop, planned from per-page write probabilities (docs/model.md,
section 2, "From a profile").

The uniform model plans a fixed bandwidth for one `p`; a recorded profile gives every page its
own `p_j` (most pages 0, a hot set near 1), and on such a workload the uniform plan is far off:
it expects every page to be rewritten at the mean rate, so it either sends too slowly for the hot
set or stops before the cold pages are across. Here the pages are grouped into classes of
similar `p_j` (log-spaced bins, plus the never-written pages) and a mean-field recursion follows
each class's clean fraction `c_k` at a bandwidth `b`, copy-then-dirty as in the uniform model:

    D(t) = sum_k w_k (1 - c_k(t))                     dirty pages
    f(t) = min(1, b / D(t))                           share of the dirty pages a step sends
    c_k(t+1) = (1 - p_k) (c_k(t) + f(t) (1 - c_k(t)))

with the pages a step sends drawn evenly from the dirty ones (a pass over the dirty bitmap does
not choose by temperature). Stopping after `t` steps costs the pre-copy so far, F(B - b) for
the part of each step spent sending (D/b when fewer than b pages are dirty) and F(B) for the
rest, plus the downtime D(t)/B. Every bandwidth of a grid is followed at once (numpy over
bandwidths x classes, one Python iteration per step), and the cheapest (b, t) is the plan. With
one class (a uniform p) this is the uniform model's recursion with the cap at M.
"""

from __future__ import annotations

import numpy as np
from calm.replay.cost import PagesCost
from calm.replay.model import FixedPlan

N_BINS = 48  # classes of p_j (log-spaced); more changes the plan by less than the grid's spacing
N_RATES = 64  # candidate bandwidths, log-spaced from B/200 to B
MAX_STEPS = 20_000  # horizon of the recursion (steps)


def page_classes(page_p: np.ndarray, n_pages: int, bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(p_k, w_k): per-class write probability (mean of its pages) and page count; the pages of
    the RAM not in `page_p` (never written) form the class p = 0."""
    page_p = np.clip(np.asarray(page_p, dtype=float), 0.0, 1.0 - 1e-12)
    hot = page_p[page_p > 0]
    cold = float(n_pages - hot.size)
    if not hot.size:
        return np.array([0.0]), np.array([cold])
    edges = np.geomspace(hot.min(), hot.max() * (1 + 1e-9), bins + 1)
    k = np.clip(np.searchsorted(edges, hot, side="right") - 1, 0, bins - 1)
    w = np.bincount(k, minlength=bins).astype(float)
    p = np.bincount(k, weights=hot, minlength=bins) / np.maximum(w, 1.0)
    keep = w > 0
    return np.concatenate(([0.0], p[keep])), np.concatenate(([cold], w[keep]))


def plan_from_profile(page_p: np.ndarray, n_pages: int, bandwidth: float, cost: PagesCost,
                      rates: int = N_RATES, max_steps: int = MAX_STEPS) -> FixedPlan:
    """The cheapest fixed bandwidth and stop time under the class recursion (module docstring).
    Returns a FixedPlan in pages and steps (n_clean: expected clean pages at the stop)."""
    B = float(bandwidth)
    p, w = page_classes(page_p, n_pages)
    b = np.geomspace(B / 200.0, B, rates)
    f_busy, f_idle = np.asarray(cost(B - b), dtype=float), float(cost(B))
    horizon = int(min(max_steps, np.ceil(3.0 * n_pages / b[0]) + 1))
    clean = np.zeros((rates, p.size))  # c_k per bandwidth
    q = 1.0 - p
    pre = np.zeros(rates)
    best_cost = np.full(rates, n_pages / B)  # stop at once: everything in the downtime
    best_t = np.zeros(rates, dtype=np.int64)
    best_dirty = np.full(rates, float(n_pages))
    dirty = np.full(rates, float(n_pages))
    for t in range(1, horizon + 1):
        share = np.minimum(1.0, b / np.maximum(dirty, 1e-300))
        busy = np.minimum(1.0, dirty / b)
        pre += f_busy * busy + f_idle * (1.0 - busy)
        clean = q * (clean + share[:, None] * (1.0 - clean))
        before, dirty = dirty, ((1.0 - clean) * w).sum(axis=1)
        total = pre + dirty / B
        better = total < best_cost
        best_cost = np.where(better, total, best_cost)
        best_t = np.where(better, t, best_t)
        best_dirty = np.where(better, dirty, best_dirty)
        if np.all(np.abs(dirty - before) <= 1e-9 * n_pages):  # every rate at its fixed point:
            break  # from here a later stop only adds pre-copy cost
    j = int(np.argmin(best_cost))
    if best_t[j] == 0:
        return FixedPlan(0.0, 0.0, n_pages / B, 0.0, n_pages / B)
    return FixedPlan(float(b[j]), float(n_pages - best_dirty[j]), float(best_cost[j]), float(best_t[j]),
                     float(best_dirty[j] / B))
