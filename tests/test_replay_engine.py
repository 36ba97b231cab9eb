"""The footprint engine: strides equal single steps, state stays footprint-sized at any RAM size,
passes take pages in the right order at the right cost, policies can order their passes, and a
long replay shows progress and stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest
from replay_helpers import hot_set, write_trace

import calm.replay.stride as stride
from calm.replay.cost import in_pages, parse_cost
from calm.replay.dirty import TraceSource
from calm.replay.layout import RamLayout
from calm.replay.passes import PageOrder, Pass
from calm.replay.policies import Clark, Fixed, Qemu, Xen
from calm.replay.scenario import parse_scenario
from calm.replay.simulator import Migration, simulate
from calm.replay.trace_map import map_trace
from calm.workloads.synthetic import write_profile_trace

COST = "mm1:rate=12,size=1MiB,sla=1s"
SERIES = ("time", "rate_bps", "sent", "dirty", "cost_so_far")


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    out = {}
    for name, interval, profile in (("phases", 0.1, "phases:3:zipf:0.6:0.5/hotcold:0.02:0.1:0.0002"),
                                    ("hotcold", 0.2, "hotcold:0.05:0.3:0.001")):
        path = d / f"{name}.h5"
        write_profile_trace(path, pages=16384, samples=120, interval=interval, profile=profile, seed=3)
        out[name] = map_trace(path)
    return out


def run(mapped, scenario: str, policy, strides: bool, **kw):
    sc = parse_scenario(scenario)
    F = in_pages(parse_cost(COST), mapped.page_size, mapped.step_seconds)
    return simulate(TraceSource(mapped, sc.n_pages(mapped.page_size)), policy,
                    sc.pages_per_step(mapped.page_size, mapped.step_seconds), F, strides=strides, **kw)


@pytest.mark.parametrize("trace", ["phases", "hotcold"])
@pytest.mark.parametrize("scenario", ["1GiB@1Gbit", "64GiB@10Gbit", "256MiB@100Mbit"])
@pytest.mark.parametrize("make", [lambda: Clark(), lambda: Clark(max_rounds=40), lambda: Fixed(),
                                  lambda: Fixed(1000.0, n_clean=None, precopy_time=None), lambda: Qemu(),
                                  lambda: Qemu(1e9, 0.05), lambda: Xen()],
                         ids=["clark", "clark-40", "fixed", "fixed-open", "qemu", "qemu-1G-50ms", "xen"])
def test_strides_give_the_step_by_step_result(traces, trace, scenario, make, monkeypatch):
    strided = []
    real = stride.try_stride
    monkeypatch.setattr(stride, "try_stride", lambda m: strided.append(real(m)) or strided[-1])
    max_steps = 20000
    a = run(traces[trace], scenario, make(), strides=False, max_steps=max_steps)
    b = run(traces[trace], scenario, make(), strides=True, max_steps=max_steps)
    assert a.summary() == b.summary()
    for key in SERIES:
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    if scenario == "64GiB@10Gbit" and make().name in ("clark", "qemu"):
        assert any(strided), "a long first pass at one rate should have been strided"


def test_state_is_per_footprint_page_whatever_the_ram(traces):
    """A 1 TiB RAM holds 268 M pages; the migration keeps arrays of the footprint's size only."""
    mapped = traces["phases"]
    sc = parse_scenario("1TiB@10Gbit")
    F = in_pages(parse_cost(COST), mapped.page_size, mapped.step_seconds)
    for policy in (Clark(), Qemu(), Xen(), Fixed()):
        m = Migration(TraceSource(mapped, sc.n_pages(4096)), policy, sc.pages_per_step(4096, mapped.step_seconds),
                      F, None, True, None)
        r = m.run()
        arrays = [v for obj in (m, m.pass_) for v in vars(obj).values() if isinstance(v, np.ndarray)]
        assert arrays and max(a.size for a in arrays) <= max(mapped.footprint, len(r.time) + 1)
        assert r.pages_sent >= sc.n_pages(4096)  # yet every page of the RAM went once


# -- passes ------------------------------------------------------------------------------------

def pass_items(layout: RamLayout, need, cursor, order, zero_now):
    """A pass as an explicit list of (footprint index or -1 for a cold page, zero?) in send order:
    cold pages from the cursor on and the dirty footprint pages, by (priority, RAM position)."""
    fp_at = {int(p): j for j, p in enumerate(layout.position)}
    zero_page = np.zeros(layout.n_pages, dtype=bool)
    for a, b in zip(layout.zero_start, layout.zero_end):
        zero_page[a:b] = True
    items = []
    for pos in range(layout.n_pages):
        j = fp_at.get(pos, -1)
        if j < 0 and pos >= cursor:
            items.append((order.cold if order else 0.0, pos, -1, bool(zero_page[pos])))
        elif j >= 0 and need[j] and (order is None or np.isfinite(order.priority[j])):
            items.append((order.priority[j] if order else 0.0, pos, j, bool(zero_now[j])))
    return [(j, z) for _, _, j, z in sorted(items)]


def take_from(items, i, skip, count=None, budget=None, normal=1.0, zero=1.0):
    """One take, page by page: skipped pages pass for free; stop at `count` pages or at the first
    page the budget cannot pay for. Returns (footprint pages, cold pages, next index)."""
    sent, cold, spent = [], 0, 0.0
    while i < len(items):
        j, z = items[i]
        if j >= 0 and skip is not None and skip[j]:
            i += 1
            continue
        cost = zero if z else normal
        if (count is not None and len(sent) + cold >= count) or (budget is not None and spent + cost > budget + 1e-9):
            break
        spent += cost
        sent, cold, i = (sent + [j], cold, i + 1) if j >= 0 else (sent, cold + 1, i + 1)
    return sent, cold, i


@pytest.mark.parametrize("seed", range(12))
def test_a_pass_takes_pages_in_order_at_their_cost(seed):
    rng = np.random.default_rng(seed)
    M = int(rng.integers(50, 400))
    F = int(rng.integers(1, M // 2))
    position = np.sort(rng.choice(M, F, replace=False))
    cuts = np.sort(rng.choice(M, 2 * int(rng.integers(0, 6)), replace=False))
    layout = RamLayout(M, position, cuts[0::2], cuts[1::2])
    need = rng.random(F) < 0.8
    cursor = int(rng.integers(0, M)) if seed % 3 else 0
    need[position < cursor] &= rng.random(int((position < cursor).sum())) < 0.5
    order = None if seed % 2 else PageOrder(rng.integers(0, 3, F).astype(float), cold=1.0)
    if order is not None:
        order.priority[rng.random(F) < 0.1] = np.inf
    zero_now = layout.footprint_zero & (rng.random(F) < 0.7)
    skip = (rng.random(F) < 0.2) if seed % 4 == 1 else None
    normal, zero = 1.0 + 8 / 4096, 9 / 4096
    items = pass_items(layout, need, cursor, order, zero_now)
    # by budget (QEMU's wire format: headers, zero pages almost free), in several takes
    p, i = Pass(layout, need, cursor, order), 0
    for budget in rng.uniform(0.5, 30, 5):
        t = p.take_budget(float(budget), normal, zero, zero_now, skip)
        sent, cold, i = take_from(items, i, skip, budget=float(budget), normal=normal, zero=zero)
        assert (t.pages.tolist(), t.cold) == (sent, cold)
    # by count, in several takes
    p, i = Pass(layout, need, cursor, order), 0
    for n in (3, 10, 1, 25, 7):
        t = p.take(n, skip, zero_now)
        sent, cold, i = take_from(items, i, skip, count=n)
        assert (t.pages.tolist(), t.cold) == (sent, cold)
    # peek_ranks names the footprint pages among the next items, and their places
    pages, ranks = Pass(layout, need, cursor, order).peek_ranks(30)
    ahead = items[:30]
    assert pages.tolist() == [j for j, _ in ahead if j >= 0]
    assert ranks.tolist() == [k for k, (j, _) in enumerate(ahead) if j >= 0]


# -- ordering interface ----------------------------------------------------------------------

class HotLast(Fixed):
    """Fixed, sending each pass's pages least-written first (a simple page-aware order); pages
    written in more than `defer_above` steps so far are left for the stop-and-copy."""

    def __init__(self, *args, defer_above: float = np.inf, **kw) -> None:
        super().__init__(*args, **kw)
        self.defer_above = defer_above
        self.orders = 0

    def order(self, log):
        self.orders += 1
        pr = log.writes.astype(float)
        pr[pr > self.defer_above] = np.inf
        return PageOrder(pr, cold=0.0)


class RamOrder(Fixed):
    def order(self, log):
        return PageOrder(np.zeros(log.position.size), cold=0.0)  # all equal: RAM order


def test_policies_may_order_their_passes(tmp_path):
    # 50 hot pages at the start of the RAM, written every step; 3950 cold ones after them
    path = write_trace(tmp_path / "t.h5", hot_set(0, 50), n_steps=10, interval=0.1)
    src = TraceSource(map_trace(path), 4000)
    F = in_pages(parse_cost(COST), 4096, 0.1)
    plain = simulate(src, Fixed(400.0, n_clean=None, precopy_time=30), 1000.0, F)
    equal = simulate(src, RamOrder(400.0, n_clean=None, precopy_time=30), 1000.0, F)
    assert plain.summary() == equal.summary()  # equal priorities: the RAM order, nothing else changes
    hot_last = HotLast(400.0, n_clean=None, precopy_time=30)
    r = simulate(src, hot_last, 1000.0, F)
    assert hot_last.orders == r.rounds  # asked once per pass
    deferred = simulate(src, HotLast(400.0, n_clean=None, precopy_time=30, defer_above=2), 1000.0, F)
    # the hot set never goes in pre-copy once it is known to be hot: fewer pages sent in all
    assert deferred.pages_sent < plain.pages_sent and deferred.final_pages == 50
    assert deferred.pages_sent - deferred.final_pages < plain.pages_sent - plain.final_pages


# -- a long replay: progress and Ctrl-C ------------------------------------------------------

@pytest.mark.slow
def test_a_long_replay_shows_progress_and_stops_cleanly_on_ctrl_c(tmp_path):
    trace = write_trace(tmp_path / "t.h5", hot_set(0, 100), n_steps=20, interval=0.1)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "calm", "replay", str(trace), "-s", "1TiB@1Gbit", "-a", "calm",
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # progress goes to stderr: wait for one from inside the simulation
        lines.append(line)
        if "s simulated" in line:
            break
    assert any("s simulated" in line for line in lines), lines
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(60) == 130
    assert rest.strip().splitlines()[-1] == "calm replay: interrupted"
    assert "Traceback" not in rest and not out.exists()  # nothing half-written


def test_default_time_limit_follows_the_first_pass_and_spares_a_planned_stop(tmp_path):
    # 4096 pages at 100 pages/step: the first pass ends in step 40 (the next one begins in it);
    # then the default allows max(1000 steps, 100 footprint send times, 10 loops of the 10-step
    # trace) = 1000 more
    path = write_trace(tmp_path / "t.h5", hot_set(0, 300), n_steps=10, interval=0.1)
    src = TraceSource(map_trace(path), 4096)
    F = in_pages(parse_cost(COST), 4096, 0.1)
    open_ended = simulate(src, Fixed(100.0, n_clean=None, precopy_time=None), 1000.0, F)
    assert open_ended.forced and open_ended.stop_reason == "time limit (1040 steps)"
    planned = simulate(src, Fixed(100.0, n_clean=None, precopy_time=3000), 1000.0, F)
    assert not planned.forced and planned.stop_reason == "Fixed: planned pre-copy time elapsed"
    assert planned.precopy_time == pytest.approx(300.0)
    explicit = simulate(src, Fixed(100.0, n_clean=None, precopy_time=3000), 1000.0, F, max_steps=500)
    assert explicit.forced and explicit.precopy_time == pytest.approx(50.0)  # an explicit limit cuts all
