"""Replaying a trace on its own memory (`-s trace@RATE`): the residency the backends record
(trace format minor 1), the RAM layout built from it, zero pages on QEMU's wire, `calm predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from collector_helpers import calm, one_line_error, region_states, start_quarters, stop
from replay_helpers import PAGE, write_trace

from calm.replay.own_memory import own_layout
from calm.replay.trace_map import map_trace
from calm.trace.format import FORMAT_MINOR, RESIDENCY_ABSENT, RESIDENCY_RESIDENT, RESIDENCY_ZERO
from calm.trace.reader import Trace
from calm.trace.writer import TraceWriter


def test_hash_backend_records_which_pages_are_resident_and_zero(tmp_path):
    proc, first = start_quarters(tmp_path, pages=4096)
    out = tmp_path / "q.h5"
    try:
        calm("record", "--backend", "hash", "--pid", str(proc.pid), "--interval", "0.2", "--duration", "1",
             "-q", "-o", str(out), check=True)
    finally:
        stop(proc)
    with Trace(out) as trace:
        assert trace.info.format_minor == FORMAT_MINOR == 1
        states = region_states(trace.residency(), first, 4096)
    q = 1024
    assert states[:q] == [RESIDENCY_RESIDENT] * q  # data
    assert states[q:3 * q] == [RESIDENCY_ZERO] * 2 * q  # written with zeros, or only read
    assert states[3 * q:] == [RESIDENCY_ABSENT] * q  # never touched
    # on its own memory, QEMU sends the region's 3072 zero pages as headers (9 bytes each)
    r = calm("replay", str(out), "-s", "trace@1Gbit", "-a", "qemu", "--no-plots", "--json", "-o",
             str(tmp_path / "r"), check=True)
    (row,) = json.loads(r.stdout)
    assert row["own_memory"] and row["zero_pages"] >= 3 * q
    assert row["bytes_sent"] == row["normal_pages"] * (PAGE + 8) + row["zero_pages"] * 9
    assert row["normal_pages"] + row["zero_pages"] == row["pages_sent"]


def synthetic_trace(path, residency, steps, processes=1):
    """A trace with given residency runs [(process, vpn, pages, state)] and per-step writes
    [(process, vpn), ...], written with the real TraceWriter."""
    w = TraceWriter(path, force=True, attrs={
        "page_size": PAGE, "backend": "hash", "interval": 0.1, "kernel_release": "test", "hostname": "test",
        "start_time": "2026-01-01T00:00:00Z", "start_time_unix": 0.0, "start_monotonic": 0.0,
        "tool_version": "test", "command": []})
    rows = [w.open_process(pid=10 + i, ppid=1, start_time_unix=0, name="p", cmdline=["p"], exe="/p")
            for i in range(processes)]
    for row in rows:
        runs = [r for r in residency if r[0] == row]
        w.add_residency(row, 0, np.array([r[1] for r in runs], np.uint64), np.array([r[2] for r in runs], np.uint64),
                        np.array([r[3] for r in runs], np.uint8))
    for s, writes in enumerate(steps):
        per = {row: (np.array(sorted(v for p, v in writes if p == row), np.uint64), 10) for row in rows}
        w.add_sample(s * 0.1, (s + 1) * 0.1, per)
    w.close(status="complete", end_reason="test")
    return path


def test_own_memory_layout_puts_each_page_at_its_own_offset(tmp_path):
    # process 0: pages 100-109 data, 110-119 zero, 120-149 absent; process 1: 500-519 data
    residency = [(0, 100, 10, RESIDENCY_RESIDENT), (0, 110, 10, RESIDENCY_ZERO), (0, 120, 30, RESIDENCY_ABSENT),
                 (1, 500, 20, RESIDENCY_RESIDENT)]
    steps = [[(0, 112), (1, 505)], [(0, 200)], [(0, 112)], [(0, 130), (0, 101)]]
    path = synthetic_trace(tmp_path / "t.h5", residency, steps, processes=2)
    layout = own_layout(map_trace(path))
    # RAM: process 0's 50 pages, its page 200 mapped later, then process 1's 20 pages
    assert layout.n_pages == 71
    # footprint in key order: (0,101) (0,112) (0,130) (0,200) (1,505)
    assert layout.position.tolist() == [1, 12, 30, 50, 56]
    # zero at the start: 110-119 (offsets 10-19), 120-149 (20-49), 200 (50, mapped later)
    assert list(zip(layout.zero_start.tolist(), layout.zero_end.tolist())) == [(10, 20), (20, 50), (50, 51)]
    assert layout.footprint_zero.tolist() == [False, True, True, True, False]
    assert layout.n_zero == 41
    # --skip: what the left-out start wrote is data from then on (112 and 505 in step 0)
    skipped = own_layout(map_trace(path, skip_seconds=0.1))
    assert skipped.n_pages == 71 and skipped.n_zero == 40  # 112 is no longer zero


def test_trace_without_residency_is_refused_for_trace_at_rate(tmp_path):
    from replay_helpers import hot_set
    import h5py

    path = write_trace(tmp_path / "old.h5", hot_set(0, 5), n_steps=5)
    with h5py.File(path, "a") as f:  # what an older calm wrote: no residency, no minor version
        del f["residency"]
        del f.attrs["format_minor"]
    with Trace(path) as trace:
        assert trace.info.format_minor == 0 and trace.residency() is None
    assert map_trace(path).footprint == 5  # still replayable on a RAM size
    line = one_line_error(calm("replay", str(path), "-s", "trace@1Gbit", "-o", str(tmp_path / "r")), 1)
    assert "does not record which pages were resident" in line
    line = one_line_error(calm("predict", str(path)), 1)
    assert "does not record which pages were resident" in line


@pytest.mark.parametrize("args,message", [
    (["--uniform", "0.01", "-s", "trace@1Gbit"], "give a trace"),
    (["TRACE", "-s", "trace@0Mbit"], "must be positive"),
    (["TRACE", "-s", "trace1Gbit"], "expected RAM@BANDWIDTH"),
])
def test_bad_trace_scenarios_give_one_line(tmp_path, args, message):
    path = synthetic_trace(tmp_path / "t.h5", [(0, 100, 10, RESIDENCY_RESIDENT)], [[(0, 101)]])
    args = [str(path) if a == "TRACE" else a for a in args]
    assert message in one_line_error(calm("replay", *args, "-o", str(tmp_path / "r")))


def test_predict_prints_qemus_table_from_a_replay(tmp_path):
    # 2048 data pages, 6144 never touched; 2000 hot pages written every step
    residency = [(0, 1000, 2048, RESIDENCY_RESIDENT), (0, 3048, 6144, RESIDENCY_ABSENT)]
    steps = [[(0, v) for v in range(1000, 3000)]] * 10
    path = synthetic_trace(tmp_path / "t.h5", residency, steps)
    r = calm("predict", str(path), "--bandwidth", "100Mbit,1Gbit,10Gbit", "--downtime", "125ms,1s,unlimited",
             check=True)
    lines = r.stdout.splitlines()
    assert "Downtime>" in lines[2] and "125ms" in lines[2] and "unlim" in lines[2]
    row100 = next(line for line in lines if line.lstrip().startswith("100 Mbit/s"))
    # 2000 pages written every 0.1 s (655 Mbit/s) outrun 100 Mbit/s: with 125 ms allowed QEMU never
    # switches over; 1 s of 100 Mbit/s (3051 pages) holds the whole hot set
    assert row100.split("|")[1].strip() == "-" and row100.split("|")[2].strip().endswith("s")
    # unlimited: one window before the first measurement, then everything in the final copy
    j = json.loads(calm("predict", str(path), "--bandwidth", "100Mbit,10Gbit", "--downtime", "125ms,unlimited",
                        "--json", check=True).stdout)
    cells = {(c["bandwidth_bps"], c["downtime_limit_s"]): c for c in j["cells"]}
    assert not cells[(100e6, 0.125)]["converges"]
    unlim = cells[(100e6, None)]
    assert unlim["converges"]
    assert unlim["total_time_s"] == pytest.approx(0.1 + (2048 * 4104 + 6144 * 9) * 8 / 100e6, rel=1e-3)
    fast = cells[(10e9, 0.125)]
    assert fast["converges"] and fast["zero_pages"] >= 6144 and fast["downtime_s"] <= 0.125
    assert j["ram_bytes"] == (2048 + 6144) * PAGE


@pytest.mark.parametrize("args,message", [
    (["--bandwidth", "1G"], "ambiguous"),
    (["--downtime", "soon"], "downtime"),
    (["--bandwidth", "1Gbit,,2Gbit"], "empty item"),
])
def test_bad_predict_input_gives_one_line(tmp_path, args, message):
    path = synthetic_trace(tmp_path / "t.h5", [(0, 100, 10, RESIDENCY_RESIDENT)], [[(0, 101)]])
    assert message in one_line_error(calm("predict", str(path), *args), 2)


def test_strides_count_zero_pages_like_single_steps(tmp_path, monkeypatch):
    """On a trace's own memory every policy but QEMU still sends whole pages, so strides apply;
    the zero pages they count must be the single steps' (data, zero and absent runs, writes
    that turn zero pages into data)."""
    from calm.replay.cost import in_pages, parse_cost
    from calm.replay.dirty import TraceSource
    from calm.replay.policies import Clark, Fixed
    from calm.replay.simulator import simulate
    import calm.replay.stride as stride

    strided = []
    real = stride.try_stride
    monkeypatch.setattr(stride, "try_stride", lambda m: strided.append(real(m)) or strided[-1])
    residency = [(0, 0, 3000, RESIDENCY_RESIDENT), (0, 3000, 2000, RESIDENCY_ZERO), (0, 5000, 20000, RESIDENCY_ABSENT)]
    steps = [[(0, v) for v in range(2900 + 40 * s, 3100 + 40 * s)] for s in range(12)]
    path = synthetic_trace(tmp_path / "t.h5", residency, steps)
    src = TraceSource(map_trace(path), None)
    F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), PAGE, 0.1)
    for make in (lambda: Clark(min_bps=30e6, max_rounds=30), lambda: Fixed(150.0, n_clean=None, precopy_time=400)):
        a = simulate(src, make(), 1000.0, F, strides=False)
        b = simulate(src, make(), 1000.0, F, strides=True)
        assert a.summary() == b.summary() and np.array_equal(a.dirty, b.dirty)
        assert a.zero_pages > 20000  # the absent and zero runs, sent as (whole) pages of zeros
    assert any(strided)
