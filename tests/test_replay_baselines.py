"""Each policy's stop rule, triggered by a trace built for it, and the trace-to-RAM mapping."""

from __future__ import annotations

import numpy as np
import pytest
from replay_helpers import hot_set, write_trace

from calm.core.errors import CalmError
from calm.replay.cost import in_pages, parse_cost
from calm.replay.dirty import TraceSource
from calm.replay.policies import Calm, Clark, ClarkAdaptive, Fixed, Qemu, Xen
from calm.replay.simulator import simulate
from calm.replay.trace_map import map_trace

STEP = 0.1
PAGE_BPS = 8 * 4096 / STEP  # bit/s of one page per 0.1 s step
F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), 4096, STEP)


def source(tmp_path, steps, n_pages, n_steps=10, **kw):
    path = write_trace(tmp_path / "t.h5", steps, n_steps=n_steps, interval=STEP, **kw)
    return TraceSource(map_trace(path), n_pages, **({"extend": kw["extend"]} if "extend" in kw else {}))


def recording(policy_class):
    """A subclass of `policy_class` that keeps the views it was shown (the policy's side)."""

    def decide(self, view):
        self.views = getattr(self, "views", []) + [view]
        return policy_class.decide(self, view)

    return type(f"Recording{policy_class.__name__}", (policy_class,), {"decide": decide})


Recording = recording(Xen)


def test_xen_stops_after_29_rounds(tmp_path):
    src = source(tmp_path, hot_set(0, 200), 4096)
    r = simulate(src, Xen(), 1000.0, F)
    assert r.rounds == 29 and r.stop_reason == "Xen: 29 rounds done"
    assert r.pages_sent - r.final_pages < 3 * 4096


def test_xen_stops_after_three_times_ram(tmp_path):
    src = source(tmp_path, hot_set(0, 1800), 4096)
    r = simulate(src, Xen(), 2500.0, F)
    assert r.stop_reason == "Xen: more than 3 x RAM sent"
    assert r.rounds < 29
    assert r.pages_sent - r.final_pages > 3 * 4096


def test_xen_stops_when_a_round_sends_fewer_than_50(tmp_path):
    src = source(tmp_path, hot_set(0, 10), 4096)
    r = simulate(src, Xen(), 1000.0, F)
    assert r.stop_reason == "Xen: fewer than 50 pages sent or skipped in the last round"
    assert r.final_pages <= 10 and r.rounds == 2


def test_xen_counts_skipped_pages_in_its_stop_rule(tmp_path):
    """xc_domain_save stops on sent_this_iter + skip_this_iter < 50, not on the pages sent alone:
    600 hot pages at 40 pages a step make round 2 send 40 and skip 560, which is no reason to stop."""
    src = source(tmp_path, hot_set(0, 600), 4096)
    policy = Recording()
    r = simulate(src, policy, 40.0, F)
    second = [v for v in policy.views if v.round_done][1]
    assert second.last_round_sent < 50 and second.last_round_sent + second.last_round_skipped >= 50
    assert r.stop_reason == "Xen: 29 rounds done" and r.rounds == 29


def test_xen_skips_pages_dirtied_before_their_turn(tmp_path):
    # 100 footprint pages on 1000 RAM pages sit at RAM pages 0, 10, ..., 990 and are written in
    # every step. At 100 pages/step, the first step sends RAM pages 0-99; the 90 hot pages from
    # 100 on are written before their turn, so round 1 skips them and sends the other 910.
    src = source(tmp_path, hot_set(0, 100), 1000)
    policy = Recording()
    simulate(src, policy, 100.0, F)
    first_end = next(v for v in policy.views if v.round_done)
    assert (first_end.last_round_sent, first_end.last_round_skipped) == (910, 90)
    assert first_end.last_round_dirtied == 100 and first_end.last_round_steps == 10


def test_clark_stops_when_the_rate_would_exceed_its_maximum(tmp_path):
    src = source(tmp_path, hot_set(0, 300), 4096)
    clark = Clark(min_bps=300 * PAGE_BPS, max_bps=320 * PAGE_BPS, increment_bps=50 * PAGE_BPS)
    r = simulate(src, clark, 1000.0, F)
    assert r.stop_reason == "Clark: next round's rate would exceed the maximum"
    assert r.rounds == 2
    assert r.downtime == pytest.approx(r.final_pages / 320 * STEP)  # stop-and-copy at the maximum
    assert np.allclose(r.rate_bps, 300 * PAGE_BPS)  # both rounds at the minimum


def test_clark_rate_rises_by_dirtying_rate_plus_increment(tmp_path):
    src = source(tmp_path, hot_set(0, 300), 4096)
    clark = Clark(min_bps=100 * PAGE_BPS, max_bps=1000 * PAGE_BPS, increment_bps=50 * PAGE_BPS)
    r = simulate(src, clark, 1000.0, F, max_steps=200)
    rates = r.rate_bps / PAGE_BPS
    # Round 1 sends 4096 pages at the minimum, 100/step: 41 steps, during which the 300 hot
    # pages were written: 300/41 + 50 < 100, so round 2 (300 pages) runs at the minimum again, in
    # 3 steps; then 300/3 + 50 = 150/step: 2 steps; then 300/2 + 50 = 200/step: 2 steps, ...
    assert np.allclose(rates[:44], 100)
    assert np.allclose(rates[44:46], 150)
    assert np.allclose(rates[46:48], 200)


def test_clark_alone_may_never_stop_and_its_round_cap(tmp_path):
    # 300 hot pages: 1- or 2-step rounds measure 150-300 pages/step; +50 stays below 1000
    src = source(tmp_path, hot_set(0, 300), 4096)
    r = simulate(src, Clark(min_bps=100 * PAGE_BPS, increment_bps=50 * PAGE_BPS), 1000.0, F, max_steps=300)
    assert r.forced and r.rounds > 30
    r = simulate(src, Clark(min_bps=100 * PAGE_BPS, increment_bps=50 * PAGE_BPS, max_rounds=5), 1000.0, F)
    assert r.stop_reason == "Clark: 5 rounds done" and r.rounds == 5 and not r.forced


MIBIT_PAGES = (1 << 20) / PAGE_BPS  # pages per step of one of ratewrite's Mbit/s (2^20 bit/s)


def test_clark_adaptive_terminates_where_clark_as_written_does_not(tmp_path):
    """Xen's ADAPTIVE_SAVE: 100 -> 500 Mbit/s, a rate that rises to the measured dirtying rate +
    50 only when that is above it, and a stop at the maximum once a round sent more than the one
    before. 3000 hot pages: round 2 runs at 100, sends 320 pages and skips 2680 (dirtied at
    3000 x 32 Kibit / 0.2 s = 491 Mbit/s), so round 3 runs at 500 (the cap), sends more than 320,
    and the migration stops; Clark as written goes on until the time limit."""
    src = source(tmp_path, hot_set(0, 3000), 8192)
    policy = recording(ClarkAdaptive)()
    r = simulate(src, policy, 2000.0, F)
    ends = [v for v in policy.views if v.round_done]
    assert r.stop_reason == "Clark (Xen ADAPTIVE_SAVE): at the maximum rate and the round sent more than the last"
    assert r.rounds == 3 and not r.forced
    assert np.allclose(r.rate_bps[: sum(v.last_round_steps for v in ends[:2])] / PAGE_BPS, 100 * MIBIT_PAGES)
    assert np.allclose(r.rate_bps[-ends[2].last_round_steps:] / PAGE_BPS, 500 * MIBIT_PAGES)
    assert ends[2].last_round_sent > ends[1].last_round_sent
    assert r.downtime == pytest.approx(r.final_pages / (500 * MIBIT_PAGES) * STEP)  # the limiter stays on
    clark = simulate(src, Clark(), 2000.0, F, max_steps=3000)
    assert clark.forced


def test_clark_adaptive_rate_only_rises_above_the_dirtying_rate(tmp_path):
    # 300 hot pages a 0.1 s step dirty 98.3 Mbit/s (10^6 bit/s, as print_stats counts): below the
    # starting 100, so the rate stays at 100 and Xen's 29-round cap ends the migration
    src = source(tmp_path, hot_set(0, 300), 8192)
    r = simulate(src, ClarkAdaptive(), 2000.0, F)
    assert r.stop_reason == "Clark (Xen ADAPTIVE_SAVE): 29 rounds done" and r.rounds == 29
    assert np.allclose(r.rate_bps / PAGE_BPS, 100 * MIBIT_PAGES)


def test_clark_stops_below_256_kib(tmp_path):
    src = source(tmp_path, hot_set(0, 20), 4096)  # 20 pages = 80 KiB stay dirty
    r = simulate(src, Clark(min_bps=500 * PAGE_BPS), 1000.0, F)
    assert r.stop_reason == "Clark: fewer than 256 KiB left"
    assert r.rounds == 1 and r.final_pages == 20


def test_clark_refuses_options_that_do_not_fit(tmp_path):
    src = source(tmp_path, hot_set(0, 20), 4096)
    with pytest.raises(CalmError, match="exceeds its maximum"):
        simulate(src, Clark(min_bps=500 * PAGE_BPS, max_bps=400 * PAGE_BPS), 1000.0, F)
    with pytest.raises(CalmError, match="exceeds the scenario"):
        simulate(src, Clark(max_bps=2000 * PAGE_BPS), 1000.0, F)


def test_qemu_completes_within_the_downtime_limit(tmp_path):
    # 998 pages a step with their 8-byte headers fill the 1000-page link: measured 40.96 MB/s,
    # x 50 ms = 500 pages of threshold (tests/test_replay_qemu.py checks the rules one by one)
    src = source(tmp_path, hot_set(0, 100), 4096)
    r = simulate(src, Qemu(downtime_limit_s=0.05), 1000.0, F)
    assert r.stop_reason.startswith("QEMU: dirty pages after the sync fit")
    assert r.final_pages * 4096 < 998 * 4104 / 0.1 * 0.05 and r.downtime <= 0.05


def test_qemu_never_converges_when_dirtying_outruns_it(tmp_path):
    src = source(tmp_path, hot_set(0, 1500), 4096)
    r = simulate(src, Qemu(downtime_limit_s=0.05), 1000.0, F, max_steps=200)
    assert r.forced and r.stop_reason == "time limit (200 steps)" and r.precopy_time == pytest.approx(20.0)


def test_untouched_pages_are_copied_once(tmp_path):
    src = source(tmp_path, lambda s: [], 4096)
    for policy in (Xen(), Qemu(), Clark(min_bps=100 * PAGE_BPS), Calm(), Fixed()):
        r = simulate(src, policy, 1000.0, F)
        assert r.pages_sent == 4096, policy.name  # every page exactly once
        if policy.name != "qemu":
            assert r.final_pages == 0 and r.stop_reason == "all pages clean", policy.name
        else:  # QEMU syncs once fewer than 300 ms of its measured bandwidth are left, and stops
            assert r.final_pages == 2100 and r.stop_reason.startswith("QEMU") and r.syncs == 3


def test_footprint_mapping_two_processes_and_chunking(tmp_path):
    steps = [[0, 1, 2, 3], [2, 3, 4], [5], [], [0, 7]]
    path = write_trace(tmp_path / "t.h5", steps, interval=STEP, two_processes=True)
    whole, chunked = map_trace(path), map_trace(path, max_events=1)
    assert whole.footprint == 7  # pages 0..5 and 7, odd ones in the second process
    assert np.array_equal(whole.pages, chunked.pages) and np.array_equal(whole.step_offsets, chunked.step_offsets)
    # footprint order: process a's vpns (0,2,4) then b's (1,3,5,7)
    order = {0: 0, 2: 1, 4: 2, 1: 3, 3: 4, 5: 5, 7: 6}
    for s, pages in enumerate(steps):
        assert sorted(whole.step_pages(s).tolist()) == sorted(order[p] for p in pages)
    assert whole.write_counts.tolist() == [2, 2, 1, 1, 2, 1, 1]
    assert whole.step_seconds == pytest.approx(STEP)
    ram = whole.ram_index(70)
    assert ram.tolist() == [0, 10, 20, 30, 40, 50, 60]  # spread evenly, order kept
    assert whole.mean_p(70) == pytest.approx(10 / (70 * 5))
    with pytest.raises(CalmError, match="smaller than the trace's dirtied footprint"):
        TraceSource(whole, 6)


def test_skip_leaves_out_the_start_of_the_trace(tmp_path):
    steps = [[0, 1, 2, 3], [2, 3, 4], [5], [], [0, 7]]
    path = write_trace(tmp_path / "t.h5", steps, interval=STEP)
    mapped = map_trace(path, skip_seconds=0.15)  # samples 0 and 1 began before 0.15 s
    assert (mapped.skipped_samples, mapped.n_steps, mapped.footprint) == (2, 3, 3)
    assert mapped.skipped_seconds == pytest.approx(2 * STEP)
    assert [sorted(mapped.step_pages(s).tolist()) for s in range(3)] == [[1], [], [0, 2]]  # 5 | - | 0, 7
    assert mapped.write_counts.tolist() == [1, 1, 1]
    assert map_trace(path, skip_seconds=0.0).n_steps == 5
    with pytest.raises(CalmError, match="leaves nothing to replay"):
        map_trace(path, skip_seconds=0.45)


def test_loop_and_resample_past_the_end(tmp_path):
    steps = [[0, 1], [0], [0, 2], [0]]  # page 0 always, 1 and 2 once in 4 steps
    path = write_trace(tmp_path / "t.h5", steps, interval=STEP)
    mapped = map_trace(path)
    loop = TraceSource(mapped, 3)
    for s in range(12):
        assert np.array_equal(loop.dirty(s), loop.dirty(s % 4))
    resample = TraceSource(mapped, 3, extend="resample", seed=3)
    assert np.array_equal(resample.dirty(2), loop.dirty(2))  # inside the trace: the trace itself
    drawn = [resample.dirty(s) for s in range(4, 4004)]
    counts = np.bincount(np.concatenate(drawn), minlength=3)
    assert counts[0] == 4000  # p = 1
    for page in (1, 2):
        assert abs(counts[page] - 1000) < 4 * np.sqrt(4000 * 0.25 * 0.75)  # p = 1/4
    assert np.array_equal(resample.dirty(500), TraceSource(mapped, 3, extend="resample", seed=3).dirty(500))
    with pytest.raises(CalmError, match="unknown trace extension"):
        TraceSource(mapped, 3, extend="mirror")


RecordingCalm, RecordingFixed = recording(Calm), recording(Fixed)


def test_simulator_counts_pages_written_in_the_step_that_sent_them(tmp_path):
    # 100 hot pages at RAM 0, 10, ..., 990 written every step; Fixed sends 100 pages a step in
    # RAM order, so each step 10 of the pages it sends are hot and come back dirty at once.
    src = source(tmp_path, hot_set(0, 100), 1000)
    policy = RecordingFixed(100.0, n_clean=None, precopy_time=5)
    simulate(src, policy, 1000.0, F)
    v = policy.views[-1]
    assert v.step == 5 and v.total_sent == 500 and v.sent_dirtied == 50
    assert v.clean_dirtied == v.sent_dirtied  # cold pages are never written: no other transitions


def test_calm_stops_when_what_it_sends_comes_back_dirty(tmp_path):
    # 1500 hot pages written every step, B = 1000 pages/step: once the cold pages are clean CALM
    # can only send hot pages, which are all written again in the same step (p_sent -> 1).
    src = source(tmp_path, hot_set(0, 1500), 4096)
    policy = RecordingCalm()
    r = simulate(src, policy, 1000.0, F)
    assert r.stop_reason == "CALM: one more clean page costs more than the downtime it saves"
    assert not r.forced and r.final_pages <= 1500 + 10 and r.precopy_time < 30  # not the plateau rule
    last = policy.views[-21:]
    sent = last[-1].total_sent - last[0].total_sent
    assert (last[-1].sent_dirtied - last[0].sent_dirtied) > 0.8 * sent


def fill_then_hot(s: int) -> list[int]:
    """A program filling 8000 pages of heap in its first two samples, then writing 50 hot pages."""
    return list(range(0, 2300)) if s == 0 else list(range(2300, 8000)) if s == 1 else list(range(50))


def test_calm_does_not_stop_right_after_a_burst(tmp_path):
    # Looped, the fill comes back every 50 steps (like a 5 s `calm.workloads.groundtruth` recording, whose
    # start-up was replayed this way). A 20-step estimate of p is at its highest just after each
    # fill, when all 8000 pages are dirty, and the stop rule fired there (~1 s of downtime).
    src = source(tmp_path, fill_then_hot, 65536, n_steps=50)
    r = simulate(src, Calm(), 780.0, F)
    assert not r.forced and r.final_pages <= 100, (r.final_pages, r.stop_reason)
    short = simulate(src, Calm(clean_window=20, plateau=None), 780.0, F)  # the old 20-step estimate
    assert short.final_pages > 7000 and r.cost < short.cost / 10


def test_saturated_calm_waits_for_a_quiet_step_when_waiting_is_free(tmp_path):
    """Once every dirty page fits in a step, each further step draws a new dirty set (the pages
    written in the step before). Here 200 hot pages are written per step except every 7th step
    (5 pages), and F is 0 above 100 pages/step of service bandwidth: waiting costs nothing, so
    CALM must stop on a quiet step's 5 pages. The earlier rule (stop at the second saturated
    step, min_draws=2) stopped with 200."""
    from calm.replay.cost import table_cost

    free = in_pages(table_cost([50 * PAGE_BPS, 100 * PAGE_BPS], [0.5, 0.0]), 4096, STEP)
    src = source(tmp_path, lambda s: range(5) if s % 7 == 3 else range(200), 4096, n_steps=14)
    r = simulate(src, Calm(), 1000.0, free)
    assert "few enough to stop on" in r.stop_reason and not r.forced
    assert r.final_pages == 5 and r.cost == pytest.approx(5 / 1000 * STEP)
    hasty = simulate(src, Calm(min_draws=2), 1000.0, free)
    assert hasty.final_pages == 200


def test_saturated_calm_stops_at_once_when_a_step_costs_more_than_the_downtime(tmp_path):
    """The same trace with a service that suffers at any bandwidth (F from 0.6 at 100 pages/step
    to 0.3 at the whole link): pre-copy still pays, but one more saturated step costs more than
    the downtime of all 200 dirty pages, so CALM stops at its second saturated step (0.5 s)
    instead of waiting for a quiet one."""
    from calm.replay.cost import table_cost

    dear = in_pages(table_cost([100 * PAGE_BPS, 1000 * PAGE_BPS], [0.6, 0.3]), 4096, STEP)
    src = source(tmp_path, lambda s: range(5) if s % 7 == 3 else range(200), 4096, n_steps=14)
    r = simulate(src, Calm(), 1000.0, dear)
    assert "few enough to stop on" in r.stop_reason
    assert r.final_pages == 200 and r.precopy_time == pytest.approx(0.5)
