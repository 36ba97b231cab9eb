"""Which algorithms have the lowest cost in a scenario, with differences that mean nothing
treated as ties.

Why a tolerance: the simulated costs of two policies often differ by amounts no user could act
on, for example 9.6e-30 s against 8.6e-15 s (both nothing) or 0.00203 s against 0.00206 s (one
page's downtime on a 1 Gbit/s link). Crowning one of them "lowest" would say something that is
not true of the service. The rule, applied wherever calm names a lowest cost (the report's badges,
its overview card and text, the README's tables):

    an algorithm ties for the lowest cost when its cost exceeds the lowest by at most
    max(1 % of the lowest cost, the downtime of one page at the scenario's bandwidth).

One page's downtime is page_size x 8 / bandwidth seconds (33 us for 4 KiB at 1 Gbit/s): the
smallest cost difference a migration can make, since every page still dirty at the stop costs
that much. Ties are taken against the lowest cost (not pairwise), so they never chain.

Works on the results dictionary (results.json), so the report and scripts need nothing else.
"""

from __future__ import annotations

TIE_RELATIVE = 0.01
TIE_RULE = ("costs within 1 % of the lowest, or within one page's downtime at the scenario's "
            "bandwidth, count as ties")


def page_downtime(page_size: int, bandwidth_bps: float) -> float:
    """Seconds of downtime one page adds: the time to send it over the whole link."""
    return page_size * 8.0 / bandwidth_bps


def tie_limit(lowest: float, page_size: int, bandwidth_bps: float) -> float:
    """The highest cost that still ties with the `lowest` cost of a scenario."""
    return lowest + max(TIE_RELATIVE * lowest, page_downtime(page_size, bandwidth_bps))


def lowest_cost(scenario: dict, page_size: int) -> set[str]:
    """The algorithms of one results.json scenario whose cost ties for the lowest (empty when no
    algorithm has a cost)."""
    costs = [(r["cost"], r["algorithm"]) for r in scenario["results"] if r.get("cost") is not None]
    if not costs:
        return set()
    limit = tie_limit(min(c for c, _ in costs), page_size, float(scenario["bandwidth_bps"]))
    return {a for c, a in costs if c <= limit}
