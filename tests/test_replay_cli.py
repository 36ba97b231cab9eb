"""`calm replay` and `calm model` through the real command, as a user runs them."""

from __future__ import annotations

import csv
import json

import pytest

from collector_helpers import calm, one_line_error
from replay_helpers import write_trace

from calm.replay.defaults import DEFAULT_COST_SPEC
from calm.replay.scenario import SLIDE_SCENARIOS


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    """A 2,000-page footprint: 100 hot pages written every step, the rest once in 50 steps."""
    def step(s):
        return list(range(100)) + list(range(100 + s % 50, 2000, 50))
    return write_trace(tmp_path_factory.mktemp("replay") / "t.h5", step, n_steps=100, interval=0.1)


def test_replay_writes_table_csv_json_and_plots(trace, tmp_path):
    out = tmp_path / "out"
    r = calm("replay", str(trace), "-s", "64MiB@256Mbit", "--scenario", "32MiB@1Gbit", "-a", "calm,xen",
             "--algorithm", "qemu", "-o", str(out), "--sweep", "4", check=True)
    for name in ("calm", "xen", "qemu", "64MiB", "256Mbit", "32MiB", "1Gbit"):
        assert name in r.stdout
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(x["scenario"], x["algorithm"]) for x in rows] == [
        ("64MiB@256Mbit", "calm"), ("64MiB@256Mbit", "xen"), ("64MiB@256Mbit", "qemu"),
        ("32MiB@1Gbit", "calm"), ("32MiB@1Gbit", "xen"), ("32MiB@1Gbit", "qemu")]
    data = json.loads((out / "results.json").read_text())
    assert data["workload"]["footprint_pages"] == 2000 and data["step_seconds"] == pytest.approx(0.1)
    first = data["scenarios"][0]
    assert first["n_pages"] == 64 * 256 and first["bandwidth_bps"] == 256e6
    res = first["results"][0]
    assert res["algorithm"] == "calm" and res["cost"] >= res["downtime"] >= 0
    assert len(res["series"]["bandwidth_bps"]) == len(res["series"]["time_s"]) > 0
    assert max(res["series"]["bandwidth_bps"]) <= 256e6 * (1 + 1e-9)
    assert float(rows[0]["cost_s"]) == pytest.approx(res["cost"])
    sweep = first["sweep"]
    assert len(sweep["bandwidth_bps"]) == len(sweep["simulated_cost"]) == len(sweep["analytic_cost"]) == 4
    for stem in ("bandwidth", "cost-vs-bandwidth"):
        for ext in ("png", "svg"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000


def test_default_scenarios_are_the_service_and_the_slides(trace, tmp_path):
    out = tmp_path / "o"
    calm("replay", str(trace), "-a", "xen", "-o", str(out), "--no-plots", "-q", check=True)
    data = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in data["scenarios"]][1:] == list(SLIDE_SCENARIOS)
    assert data["scenarios"][0]["origin"] == "service"
    assert not list(out.glob("*.png"))


def test_default_output_directory_is_next_to_the_trace(trace, tmp_path):
    calm("replay", str(trace), "-a", "fixed", "-s", "16MiB@1Gbit", "--no-plots", "-q", check=True)
    assert (trace.parent / "t-replay" / "results.json").exists()


def test_uniform_workload(tmp_path):
    out = tmp_path / "u"
    r = calm("replay", "--uniform", "0.001", "--interval", "1s", "-s", "40MiB@100Mbit", "-a", "calm,fixed",
             "--cost", "mm1:rate=2,size=1MiB,sla=1s", "-o", str(out), "--no-plots", check=True)
    assert "uniform p=0.001" in r.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["workload"] == {"kind": "uniform", "p": 0.001, "step_seconds": 1.0, "seed": 0}
    assert data["scenarios"][0]["mean_p"] == 0.001


def test_cost_from_a_csv_table(trace, tmp_path):
    table = tmp_path / "nutch.csv"
    table.write_text("bandwidth,probability\n50Mbit,0.9\n100Mbit,0.2\n200Mbit,0.01\n")
    out = tmp_path / "c"
    calm("replay", str(trace), "-s", "16MiB@256Mbit", "-a", "calm", "--cost", f"csv:{table}",
         "-o", str(out), "--no-plots", "-q", check=True)
    data = json.loads((out / "results.json").read_text())
    assert data["cost"]["kind"] == "table" and data["cost"]["probability"][0] == 1.0


def test_model_reproduces_the_slide_example(tmp_path):
    out = tmp_path / "m"
    r = calm("model", "-o", str(out), check=True)
    # the slides' numbers in a 20 ms time unit (a 163.84 Mbit/s link), priced with the replay's default F
    assert "M=10000 pages (39.1 MiB), p=0.001 and B=100 pages per 0.02 s (164 Mbit/s)" in r.stdout
    assert "F=mm1:rate=12,size=1MiB,sla=1s" in r.stdout
    data = json.loads((out / "model.json").read_text())
    assert data["parameters"]["cost"]["spec"] == DEFAULT_COST_SPEC and data["parameters"]["time_unit_s"] == 0.02
    from calm.replay import model
    from calm.replay.cost import in_pages, parse_cost
    F = in_pages(parse_cost(DEFAULT_COST_SPEC), 4096, 0.02)
    assert data["fixed"]["cost"] == pytest.approx(model.optimal_fixed(10000, 0.001, 100.0, F).cost)
    assert data["calm"]["cost"] == pytest.approx(model.calm_plan(10000, 0.001, 100.0, F).cost)
    assert data["calm"]["cost"] < data["fixed"]["cost"]
    curve = list(csv.DictReader((out / "fixed-cost.csv").open()))
    assert len(curve) == 400 and min(float(x["cost"]) for x in curve) >= data["fixed"]["cost"] * (1 - 1e-9)
    schedule = list(csv.DictReader((out / "calm-schedule.csv").open()))
    assert len(schedule) == data["calm"]["n_clean"]
    for ext in ("png", "svg"):
        assert (out / f"model.{ext}").stat().st_size > 1000
    # the cost curve has an interior optimum, as in the slides' figure, and CALM's schedule rises
    costs = [float(x["cost"]) for x in curve]
    best = costs.index(min(costs))
    assert 0 < best < len(costs) - 1 and costs[0] > 2 * min(costs) and costs[-1] > 2 * min(costs)
    bandwidth = [float(x["bandwidth"]) for x in schedule]
    from calm.replay.plots import schedule_summary
    import numpy as np
    said = schedule_summary(np.array(bandwidth), lambda b: b * 4096 * 8 / 0.02 / 1e6, "Mbit/s")
    assert bandwidth[-1] > 2 * bandwidth[0] and said.startswith("CALM rises from 8.389 to 24.77 Mbit/s"), said
    # costs in seconds on the terminal: the unit's 0.02 s times the model's time units
    fixed_line = next(line for line in r.stdout.splitlines() if line.startswith("optimal fixed"))
    assert f"{data['fixed']['cost'] * 0.02:.5g}" in fixed_line and "Mbit/s" in fixed_line
    # the optimum is at the corner N = q M: p M = 10 pages (0.002 s) are left for the copy phase
    for line in (fixed_line, next(x for x in r.stdout.splitlines() if x.startswith("CALM"))):
        assert line.split()[-1] == "0.002" and " 9990 " in line, line


def test_model_with_physical_units(tmp_path):
    r = calm("model", "--ram", "1GiB", "--bandwidth", "1Gbit", "--time-unit", "100ms", "--p", "0.0005",
             "--batch", "64", "--cost", "mm1:rate=12,size=1MiB,sla=1s", "-o", str(tmp_path / "m"), "--no-plots",
             check=True)
    assert "M=262144 pages" in r.stdout and "B=3051.76 pages per 0.1 s (1,000 Mbit/s)" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["-s", "1GiB@0Mbit"], "bandwidth '0Mbit' must be positive"),
    (["-s", "1GiB@-1Gbit"], "must be positive"),
    (["-s", "1GB@1Gbit"], "ambiguous RAM size '1GB'"),
    (["-s", "1GiB@1G"], "ambiguous bandwidth '1G'"),
    (["-s", "1GiB"], "expected RAM@BANDWIDTH"),
    (["-s", "4MiB@1Gbit"], "smaller than the trace's dirtied footprint"),
    (["-a", "calm,vmware"], "unknown algorithm 'vmware'"),
    (["--cost", "mm1:rate=1"], "lacks"),
    (["--cost", "BADCSV"], "must be non-increasing"),
    (["--interval", "1s"], "--interval applies to --uniform only"),
    (["--seed", "3"], "--seed only matters"),
    (["--sweep", "x"], "not a whole number"),
    (["--sweep", "1"], "at least 2 points"),
    (["-a", "xen", "--clark-min", "100Mbit"], "need the clark algorithm"),
    (["-s", "64MiB@256Mbit", "-a", "clark", "--clark-max", "512Mbit"], "exceeds the bandwidth of scenario 64MiB@256Mbit"),
    (["--max-time", "soon"], "--max-time: cannot parse duration 'soon'"),
    (["--skip", "10min"], "leaves nothing to replay"),
    (["--skip=-1s"], "--skip"),
    (["-a", "clark", "--clark-max-rounds", "0"], "--clark-max-rounds: must be at least 1"),
])
def test_bad_replay_input_gives_one_line(trace, tmp_path, args, message):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("100Mbit,0.1\n200Mbit,0.5\n")
    args = [str(bad_csv) if a == "BADCSV" else a for a in args]
    line = one_line_error(calm("replay", str(trace), *args, "-o", str(tmp_path / "o")))
    assert message in line


@pytest.mark.parametrize("args,message", [
    ([], "trace calm.h5 does not exist (record one with `calm record`"),
    (["MISSING"], "does not exist"),
    (["--uniform", "1.5"], "--uniform: must be in [0, 1)"),
    (["--uniform", "0.1", "--extend", "resample"], "--extend applies to traces only"),
    (["--uniform", "0.1", "--skip", "1s"], "--skip applies to traces only"),
    (["--uniform", "0.1", "--interval", "0s"], "must be positive"),
])
def test_bad_replay_workload(tmp_path, args, message):
    args = [str(tmp_path / "missing.h5") if a == "MISSING" else a for a in args]
    assert message in one_line_error(calm("replay", *args, "-o", str(tmp_path / "o")))


def test_not_a_trace(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    assert "not an HDF5 file" in one_line_error(calm("replay", str(junk), "-o", str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()  # nothing created for a bad input


@pytest.mark.parametrize("args,message", [
    (["--p", "2"], "--p: must be in [0, 1)"),
    (["--bandwidth-pages", "0"], "--bandwidth-pages: must be greater than 0"),
    (["--bandwidth", "100MB/s"], "ambiguous"),
    (["--batch", "0"], "--batch: must be at least 1"),
    (["--pages", "10", "--ram", "1GiB"], "not both"),
    (["--ram", "1GiB", "--page-size", "3000"], "not a whole number"),
])
def test_bad_model_input_gives_one_line(tmp_path, args, message):
    assert message in one_line_error(calm("model", *args, "-o", str(tmp_path / "m")))


def test_policy_options_reach_the_policies(trace, tmp_path):
    out = tmp_path / "opts"
    calm("replay", str(trace), "-s", "16MiB@256Mbit", "-a", "clark,qemu", "--clark-min", "20Mbit",
         "--clark-max", "200Mbit", "--clark-increment", "10Mbit", "--clark-max-rounds", "7",
         "--qemu-max-bandwidth", "128Mbit", "--qemu-downtime-limit", "50ms", "-o", str(out), "--no-plots", "-q",
         check=True)
    clark, qemu = json.loads((out / "results.json").read_text())["scenarios"][0]["results"]
    assert clark["options"]["min_bps"] == pytest.approx(20e6) and clark["options"]["max_bps"] == pytest.approx(200e6)
    assert clark["options"]["increment_bps"] == pytest.approx(10e6) and clark["options"]["max_rounds"] == 7
    assert clark["rounds"] <= 7
    opts = qemu["options"]
    assert opts["max_bandwidth_bps"] == pytest.approx(128e6) and opts["downtime_limit_s"] == 0.05
    assert opts["final_copy_bps"] == pytest.approx(256e6) and not opts["capped_by_link"]
    assert max(qemu["series"]["bandwidth_bps"]) == pytest.approx(128e6)
    assert qemu["downtime"] <= 0.05 + 1e-9


def test_max_time_and_extension_modes(trace, tmp_path):
    # 100 hot pages per 0.1 s step outrun a 10 Mbit link (30.5 pages per step): QEMU never converges
    out = tmp_path / "slow"
    calm("replay", str(trace), "-s", "16MiB@10Mbit", "-a", "qemu", "--max-time", "30s", "-o", str(out),
         "--no-plots", "-q", check=True)
    (qemu,) = json.loads((out / "results.json").read_text())["scenarios"][0]["results"]
    assert qemu["forced"] and qemu["precopy_time"] == pytest.approx(30.0)
    costs = {}
    for extend in ("loop", "resample"):
        o = tmp_path / extend
        extra = ["--seed", "5"] if extend == "resample" else []
        calm("replay", str(trace), "-s", "16MiB@10Mbit", "-a", "qemu", "--max-time", "30s", "--extend", extend,
             *extra, "-o", str(o), "--no-plots", "-q", check=True)
        data = json.loads((o / "results.json").read_text())
        assert data["workload"]["kind"] == "trace" and data["workload"]["extend"] == extend
        costs[extend] = data["scenarios"][0]["results"][0]["series"]["dirty_pages"]
    assert costs["loop"][:100] == costs["resample"][:100]  # same trace while it lasts (10 s)
    assert costs["loop"][100:] != costs["resample"][100:]  # then looped vs drawn


def test_skip_drops_the_start_of_the_trace(trace, tmp_path):
    out = tmp_path / "skip"
    calm("replay", str(trace), "-s", "16MiB@100Mbit", "-a", "fixed", "--skip", "2s", "-o", str(out),
         "--no-plots", "-q", check=True)
    workload = json.loads((out / "results.json").read_text())["workload"]
    assert (workload["skipped_samples"], workload["n_steps"]) == (20, 80)
    assert workload["skipped_seconds"] == pytest.approx(2.0)
