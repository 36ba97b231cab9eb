"""Online CALM on synthetic traces built to break it (issue 14's failure mechanisms)."""

from __future__ import annotations

import pytest
from calm.replay.cost import in_pages, parse_cost
from calm.replay.dirty import TraceSource
from calm.replay.policies import Calm, Fixed
from calm.replay.simulator import simulate
from calm.replay.trace_map import map_trace

from calm.workloads.synthetic import write_profile_trace

STEP = 0.1


def test_a_prior_held_low_by_cold_memory_does_not_stop_the_first_pass(tmp_path):
    """Mechanism (a): half the pages hot (written with p = 0.5 a step, far more than a step can
    send), half cold, in a RAM twice the footprint. The pages CALM has made clean are cold and stay
    clean, but its estimate of p_clean carries a prior of M page-steps at the mean p (0.125), so
    after a few steps it sees no clean page worth its cost and stops with nearly all RAM still to
    copy in the downtime. In the first pass it now asks the evidence (a prior worth one step of
    sending), finishes the pass and leaves only the hot set for the downtime."""
    path = tmp_path / "hotcold.h5"
    write_profile_trace(path, pages=16384, samples=100, interval=STEP, profile="hotcold:0.5:0.5:0.0")
    src = TraceSource(map_trace(path), 32768)
    F = in_pages(parse_cost("mm1:rate=3,size=1MiB,sla=1s"), 4096, STEP)
    B = 128e6 / 8 / 4096 * STEP
    before = simulate(src, Calm(finish_first_pass=False), B, F)
    assert before.rounds == 1 and before.final_pages > 0.9 * 32768  # the failure, reproduced
    now = simulate(src, Calm(), B, F)
    fixed = simulate(src, Fixed(), B, F)
    assert now.rounds >= 2 and now.final_pages < 0.3 * 32768
    assert now.cost < 0.4 * before.cost
    assert now.cost == pytest.approx(fixed.cost, rel=0.25)


def test_a_ramping_dirty_rate_does_not_keep_calm_waiting_into_the_peak(tmp_path):
    """Mechanism (b): every page's write probability rises from 0.0005 to 0.03 over 60 s. Once all
    dirty pages fit in a step CALM waits for a quiet step; drawn from the past, each new dirty
    count looks worse than the ones before, the threshold never fires, and the plateau rule stops
    it 30 s later with ten times the dirty pages it had at first. Following the significant trend
    of the saturated counts, it stops while they are still low."""
    import numpy as np

    path = tmp_path / "ramp.h5"
    profile = "phases:1:" + "/".join(f"uniform:{p:.6f}" for p in np.linspace(0.0005, 0.03, 60))
    write_profile_trace(path, pages=65536, samples=600, interval=STEP, profile=profile)
    src = TraceSource(map_trace(path), 65536)
    F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), 4096, STEP)
    B = 1e9 / 8 / 4096 * STEP
    before = simulate(src, Calm(follow_trend=False), B, F)
    assert before.stop_reason.startswith("CALM: clean count saturated")  # the failure, reproduced
    assert before.precopy_time > 30 and before.final_pages > 1000
    now = simulate(src, Calm(), B, F)
    assert now.stop_reason.startswith("CALM: i = M") and now.precopy_time < 12
    assert now.cost < 0.3 * before.cost
    assert now.cost < simulate(src, Fixed(), B, F).cost
