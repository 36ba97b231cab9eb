"""The replay migrates the service: shared pages once, a default RAM sized from the recorded
service, scenarios too small for it reported while the others run, and notes about idle tails and
short replays. Traces are written with the real TraceWriter (real HDF5 files, read back by the
real reader)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calm.replay.runner import round_up_ram, run_replay
from calm.replay.trace_map import map_trace
from calm.trace.maps import MapsTable
from calm.trace.writer import TraceWriter
from tests.collector_helpers import calm

MIB = 1 << 20
PAGE = 4096
SHARED_VPN = {1: 0x10000, 2: 0x20000}  # the shared object at different addresses in two processes
PRIVATE_VPN = 0x50000


def _service_trace(path, *, samples=40, shared_pages=256, private_pages=128, pss_pages=25_000,
                   idle_from: int | None = None, seed=0):
    """Two processes mapping one MAP_SHARED object (dev 0:1, inode 77) and private memory; both
    write the same shared pages every sample (soft-dirty semantics: each writer reports them)."""
    rng = np.random.default_rng(seed)
    w = TraceWriter(path, force=True, attrs={
        "page_size": PAGE, "backend": "soft-dirty", "backend_method": "pagemap-read", "interval": 0.1,
        "kernel_release": "", "hostname": "", "start_time": "", "start_time_unix": 0.0,
        "start_monotonic": 0.0, "tool_version": "test", "command": [], "shared_writes": "writer"})
    rows = {}
    for pid in (1, 2):
        rows[pid] = w.open_process(pid=pid, ppid=0, start_time_unix=0.0, name="svc", cmdline=[], exe="")
        start = np.array([SHARED_VPN[pid] * PAGE, PRIVATE_VPN * PAGE], dtype=np.uint64)
        end = start + np.array([shared_pages * PAGE, private_pages * PAGE], dtype=np.uint64)
        w.add_maps(rows[pid], 0, MapsTable(start, end, ["rw-s", "rw-p"], np.zeros(2, np.uint64),
                                           np.array([77, 0], np.uint64), ["/dev/zero (deleted)", ""],
                                           np.array([1, 0], np.uint64)))
    for s in range(samples):
        idle = idle_from is not None and s >= idle_from
        shared = np.flatnonzero(rng.random(shared_pages) < (0.0 if idle else 0.5)).astype(np.uint64)
        per = {}
        for pid in (1, 2):
            private = np.flatnonzero(rng.random(private_pages) < (0.0 if idle else 0.3)).astype(np.uint64)
            per[rows[pid]] = (np.concatenate((shared + np.uint64(SHARED_VPN[pid]), private + np.uint64(PRIVATE_VPN))),
                              shared_pages + private_pages)
        w.add_sample(s * 0.1, (s + 1) * 0.1, per, pss={rows[1]: pss_pages // 2, rows[2]: pss_pages // 2})
    w.close(status="complete", end_reason="test")


def test_shared_pages_are_migrated_once(tmp_path):
    trace = tmp_path / "svc.h5"
    _service_trace(trace, samples=30)
    m = map_trace(trace)
    # each process dirtied the same ~all shared pages: the footprint holds them once
    assert m.footprint <= 256 + 2 * 128
    assert m.footprint > 256 + 128
    for step in range(m.n_steps):
        pages = m.step_pages(step)
        assert np.unique(pages).size == pages.size  # a page at most once per step
    assert m.resident_pages == 25_000


def test_default_ram_follows_the_service_and_too_small_scenarios_are_reported(tmp_path):
    trace = tmp_path / "svc.h5"
    _service_trace(trace, pss_pages=70_000)  # 273 MiB resident: bigger than 256 MiB
    report = run_replay(str(trace), None, ["calm", "xen"])
    names = [s.scenario.name for s in report.scenarios]
    assert names[0] == "384MiB@1Gbit" and report.scenarios[0].origin == "service"
    assert all(s.results and not s.skipped for s in report.scenarios)  # the footprint fits them all
    # a RAM smaller than the footprint: reported in the table, the others still run
    report = run_replay(str(trace), ["1MiB@1Gbit", "64MiB@1Gbit"], ["calm"])
    small, fine = report.scenarios
    assert small.skipped.startswith("too small") and not small.results
    assert fine.results and not fine.skipped
    rows = report.table()
    assert rows[0]["algorithm"] == "-" and rows[0]["cost_s"] is None and "too small" in rows[0]["stop_reason"]
    assert rows[1]["algorithm"] == "calm" and rows[1]["cost_s"] is not None


def test_cli_table_says_which_scenario_is_too_small(tmp_path):
    trace = tmp_path / "svc.h5"
    _service_trace(trace)
    r = calm("replay", str(trace), "-s", "1MiB@1Gbit", "-s", "64MiB@1Gbit", "-a", "calm", "-o",
             str(tmp_path / "o"), check=True)
    line = next(line for line in r.stdout.splitlines() if line.startswith("1MiB"))
    assert "too small: RAM < the service's dirtied footprint" in line
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["scenarios"][0]["skipped"] and data["scenarios"][1]["results"]
    assert (tmp_path / "o" / "bandwidth.png").stat().st_size > 0


def test_replay_says_when_it_loops_an_idle_tail(tmp_path):
    trace = tmp_path / "idle.h5"
    _service_trace(trace, samples=40, idle_from=24)
    r = calm("replay", str(trace), "-s", "64MiB@100Mbit", "-a", "xen", "-o", str(tmp_path / "o"),
             "--no-plots", check=True)
    assert "ends with 1.6 s of idle samples (16 of 40" in r.stderr
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert any("idle samples" in n for n in data["notes"])
    # a busy trace gets no such note
    busy = tmp_path / "busy.h5"
    _service_trace(busy, samples=40)
    r = calm("replay", str(busy), "-s", "64MiB@100Mbit", "-a", "xen", "-o", str(tmp_path / "b"),
             "--no-plots", check=True)
    assert "idle" not in r.stderr


def test_replay_says_when_skip_leaves_few_samples(tmp_path):
    trace = tmp_path / "svc.h5"
    _service_trace(trace, samples=40)
    r = calm("replay", str(trace), "--skip", "3.5s", "-s", "64MiB@1Gbit", "-a", "calm", "-o",
             str(tmp_path / "o"), "--no-plots", check=True)
    assert "--skip 3.5s leaves only 5 of the trace's 40 samples" in r.stderr
    r = calm("replay", str(trace), "--skip", "0.5s", "-s", "64MiB@1Gbit", "-a", "calm", "-o",
             str(tmp_path / "p"), "--no-plots", check=True)
    assert "leaves only" not in r.stderr


@pytest.mark.parametrize("size,expected", [(1, 64 * MIB), (64 * MIB, 64 * MIB), (64 * MIB + 1, 96 * MIB),
                                           (97 * MIB, 128 * MIB), (140 * MIB, 192 * MIB),
                                           (600 * MIB, 768 * MIB), (3 << 30, 3 << 30)])
def test_round_up_ram(size, expected):
    assert round_up_ram(size) == expected


def test_report_shows_the_service_and_a_scenario_too_small(tmp_path):
    trace = tmp_path / "svc.h5"
    _service_trace(trace)
    calm("replay", str(trace), "-s", "1MiB@1Gbit", "-s", "64MiB@1Gbit", "-a", "calm,xen", "-o",
         str(tmp_path / "r"), "-q", check=True)
    calm("report", str(trace), "--replay", str(tmp_path / "r" / "results.json"), "-o",
         str(tmp_path / "report.html"), "-q", check=True)
    html = (tmp_path / "report.html").read_text()
    assert "too small: RAM &lt; the service&#x27;s dirtied footprint" in html or "too small: RAM < the service" in html
    assert "each counted once" in html and "shared written" in html and "mapped by" in html
    assert "Resident memory" in html
