"""`calm sweep`'s command line without a cluster: what it refuses and how (one line, before anything
is started or written), how it explains a missing Dask, and the pieces the table is built from."""

from __future__ import annotations

import subprocess
import sys

import pytest
from collector_helpers import calm, one_line_error
from replay_helpers import write_trace
from sweep_helpers import calm_tree, isolated_env, site_packages_without

from calm.core import argtypes
from calm.replay.sweep import Variant, variants
from calm.replay.sweep_table import format_summary, winners


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    return write_trace(tmp_path_factory.mktemp("sweep-cli") / "t.h5", lambda s: list(range(50 + s % 5)), n_steps=20)


@pytest.mark.parametrize("args, message", [
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "--workers sizes the local cluster"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--scheduler-file", "s.json"], "not both"),
    (["-a", "calm", "--qemu-max-bandwidth", "1Gbit"], "--qemu-max-bandwidth needs the qemu algorithm"),
    (["--qemu-max-bandwidth", "50Mbit,,1Gbit"], "empty item in '50Mbit,,1Gbit'"),
    (["--qemu-max-bandwidth", "50Mbit,1GB"], "'1GB'"),
    (["--clark-max-rounds", "3,0"], "'0': must be at least 1"),
    (["--seed", "3"], "--seed only matters with --extend resample"),
    (["--workers", "0"], "must be at least 1"),
])
def test_usage_errors_are_one_line_exit_2(trace, tmp_path, args, message):
    line = one_line_error(calm("sweep", str(trace), *args, cwd=tmp_path), exit_code=2)
    assert line.startswith("calm sweep: error: ") and message in line
    assert list(tmp_path.iterdir()) == []


def test_a_trace_is_required(tmp_path):
    assert "the following arguments are required: TRACE" in one_line_error(calm("sweep", cwd=tmp_path), 2)


@pytest.mark.parametrize("args, message", [
    (["nope.h5"], "trace nope.h5 does not exist"),
    (["TRACE", "--cost", "mm1:rate=12"], "lacks"),
    (["TRACE", "--scheduler", "nonsense"], "bad Dask scheduler address 'nonsense'"),
    (["TRACE", "--skip", "1h"], "leaves nothing to replay"),
])
def test_bad_input_is_one_line_exit_1_before_anything_starts(trace, tmp_path, args, message):
    args = [str(trace) if a == "TRACE" else a for a in args]
    line = one_line_error(calm("sweep", *args, cwd=tmp_path), exit_code=1)
    assert message in line
    assert list(tmp_path.iterdir()) == []  # no output directory, no cluster


def test_without_dask_it_says_how_to_install_it(trace, tmp_path):
    """An interpreter that really has no Dask: `python -S` (no site-packages at all) with only the
    repository's calm on its path. `calm sweep --help` still works; a sweep says what to install."""
    env = isolated_env(calm_tree(tmp_path))
    probe = subprocess.run([sys.executable, "-S", "-c", "import dask"], env=env, capture_output=True, text=True)
    assert "No module named 'dask'" in probe.stderr
    helped = subprocess.run([sys.executable, "-S", "-m", "calm", "sweep", "--help"], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert helped.returncode == 0 and "--qemu-max-bandwidth RATES" in helped.stdout, helped.stderr
    result = subprocess.run([sys.executable, "-S", "-m", "calm", "sweep", str(trace)], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    line = one_line_error(result, exit_code=1)
    assert line == "calm sweep: error: calm sweep needs Dask distributed: pip install 'calm[sweep]' " \
                   "(dask is not installed)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calm-tree"]


@pytest.mark.slow
def test_without_pyarrow_it_writes_csv_and_says_why_no_parquet(trace, tmp_path):
    """This interpreter's packages less pyarrow (really absent from the path), a real sweep."""
    env = isolated_env(calm_tree(tmp_path), site_packages_without(tmp_path, "pyarrow"))
    probe = subprocess.run([sys.executable, "-S", "-c", "import numpy, distributed, pyarrow"], env=env,
                           capture_output=True, text=True)
    assert "No module named 'pyarrow'" in probe.stderr, probe.stderr
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-S", "-m", "calm", "sweep", str(trace), "-s", "1MiB@1Gbit",
                             "-a", "calm,xen", "--workers", "1", "--no-plots", "-o", str(out)],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "pyarrow is not installed, so no sweep.parquet (pip install pyarrow)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep.json"]


def test_list_values_and_policy_variants():
    rates = argtypes.values(argtypes.rate())
    assert rates("50Mbit, 1Gbit") == [50e6, 1e9]
    grid = {"qemu_max_bandwidth_bps": [50e6, 1e8], "qemu_downtime_limit_s": [0.1, 0.3],
            "clark_max_rounds": [5]}
    got = variants(["calm", "qemu", "clark", "xen"], grid)
    assert [v.label for v in got] == [
        "calm", "qemu max-bandwidth=50Mbit downtime-limit=0.1s", "qemu max-bandwidth=50Mbit downtime-limit=0.3s",
        "qemu max-bandwidth=100Mbit downtime-limit=0.1s", "qemu max-bandwidth=100Mbit downtime-limit=0.3s",
        "clark max-rounds=5", "xen"]
    options = got[2].options()
    assert (options.qemu_max_bandwidth_bps, options.qemu_downtime_limit_s, options.clark_max_rounds) == \
        (50e6, 0.3, None)
    assert Variant("calm").options() == Variant("calm", ()).options()


def _row(trace, scenario, policy, cost_s, error=""):
    return {"trace": trace, "scenario": scenario, "cost": "F", "policy": policy, "cost_s": cost_s, "error": error,
            "page_size": 4096, "bandwidth_bps": 1e9}


def test_winners_ties_and_failed_groups():
    """The project's tie rule (calm.replay.compare): within 1 % of the lowest cost, or within one
    page's downtime at the link (4 KiB at 1 Gbit/s: 32.8 us)."""
    rows = [_row("a", "s1", "calm", 1.0), _row("a", "s1", "xen", 1.02),
            _row("b", "s1", "calm", 3.0), _row("b", "s1", "xen", 3.0 * 1.009),
            _row("e", "s1", "calm", 1e-6), _row("e", "s1", "xen", 3e-5), _row("e", "s1", "qemu", 4e-5),
            _row("c", "s1", "calm", None, "RAM too small"), _row("c", "s1", "xen", None, "RAM too small"),
            _row("d", "s1", "calm", 0.5, ""), _row("d", "s1", "xen", None, "boom")]
    assert winners(rows) == {("a", "s1", "F"): ["calm"], ("b", "s1", "F"): ["calm", "xen"],
                             ("e", "s1", "F"): ["calm", "xen"], ("c", "s1", "F"): [], ("d", "s1", "F"): ["calm"]}
    text = format_summary(rows)
    calm_line = next(line for line in text.splitlines() if " calm " in f" {line} ")
    assert calm_line.split()[-3:] == ["3.00", "4", "1"]  # max cost 3, wins 4 of 5 traces, 1 failed
