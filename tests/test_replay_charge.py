"""What the cost charges (replay.charge): absolute (the slides), extra, and a price per second."""

from __future__ import annotations

import pytest
from calm.replay.charge import Charge
from calm.replay.cost import parse_cost
from calm.replay.runner import run_replay

from calm.core.errors import CalmError

# A service that misses its SLA now and then even with the whole 256 Mbit/s link: F(B) > 0.
COST = parse_cost("mm1:rate=28,size=1MiB,sla=1s")
SCENARIOS = ["256MiB@256Mbit", "1GiB@1Gbit"]


def replay(charge, algorithms=("xen", "calm")):
    report = run_replay(None, SCENARIOS, list(algorithms), COST, uniform_p=0.0005, max_time_s=600, charge=charge)
    return {(s.scenario.name, r.algorithm): r for s in report.scenarios for r in s.results}, report


def test_extra_and_price_bill_xen_the_same_run_differently():
    """Xen's run does not depend on the cost, so the charges must differ by exactly what they
    define: extra leaves out F(B) over the whole migration, a price adds price x its length."""
    absolute, report = replay(None, ["xen"])
    extra, extra_report = replay(Charge("extra"), ["xen"])
    priced, _ = replay(Charge("absolute", 0.01), ["xen"])
    assert report.cost["charge"] == "absolute" and extra_report.cost["charge"] == "extra"
    for scenario in SCENARIOS:
        a, e, p = (x[(scenario, "xen")] for x in (absolute, extra, priced))
        assert a.total_time == e.total_time == p.total_time
        f_full = float(COST(parse_bandwidth(scenario)))
        assert e.cost == pytest.approx(a.cost - f_full * a.total_time, rel=1e-9)
        assert p.cost == pytest.approx(a.cost + 0.01 * a.total_time, rel=1e-9)
    assert float(COST(256e6)) > 0.05  # the 256 Mbit/s case is one where extra differs


def parse_bandwidth(scenario: str) -> float:
    from calm.replay.scenario import parse_scenario

    return parse_scenario(scenario).bandwidth_bps


def test_calm_plans_for_the_price_of_time():
    """Where F is ~0 (1 Gbit/s) time is free and CALM pre-copies at leisure; priced, it finishes
    sooner and costs less than its unpriced run would under the same price."""
    free, _ = replay(None, ["calm"])
    priced, _ = replay(Charge("absolute", 0.01), ["calm"])
    f, p = free[("1GiB@1Gbit", "calm")], priced[("1GiB@1Gbit", "calm")]
    assert p.total_time < f.total_time
    assert p.cost < f.cost + 0.01 * f.total_time


def test_bad_charges_are_refused():
    with pytest.raises(CalmError, match="unknown charge"):
        Charge("relative")
    with pytest.raises(CalmError, match="price per second"):
        Charge("extra", -1.0)


def model_json(tmp_path, *args):
    import json

    from collector_helpers import calm

    out = tmp_path / ("m" + "".join(a.strip("-")[:2] for a in args))
    r = calm("model", "-o", str(out), "--no-plots", "--json", *args, check=True)
    return json.loads(r.stdout)


def test_calm_model_takes_the_same_charges(tmp_path):
    # the slides' example: F ~ 0 over most bandwidths, so time is nearly free until priced
    free, priced = model_json(tmp_path), model_json(tmp_path, "--price-per-second", "0.01")
    assert priced["parameters"]["price_per_s"] == 0.01
    assert priced["calm"]["precopy_time"] < free["calm"]["precopy_time"]
    assert priced["calm"]["cost"] > free["calm"]["cost"]
    # 512 MiB at 256 Mbit/s for a service that misses its SLA 8% of the time at the full link:
    # pre-copy never pays, the cost is the downtime, and extra leaves out what happens anyway
    args = ("--ram", "512MiB", "--bandwidth", "256Mbit", "--time-unit", "100ms", "--cost", "mm1:rate=28,size=1MiB,sla=1s")
    absolute, extra = model_json(tmp_path, *args), model_json(tmp_path, *args, "--charge", "extra")
    f_full = float(parse_cost("mm1:rate=28,size=1MiB,sla=1s")(256e6))
    assert absolute["fixed"]["n_clean"] == extra["fixed"]["n_clean"] == 0
    assert extra["fixed"]["cost"] == pytest.approx(absolute["fixed"]["cost"] * (1 - f_full))
