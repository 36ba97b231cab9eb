"""The QEMU policy against QEMU's own rules (migration/migration.c, ram.c, options.c).

`qemu_reference` is an independent page-by-page rendering of QEMU's loop, written from the C
code's structure rather than from the simulator's: a migration bitmap and a dirty log of RAM
pages, a byte budget per 100 ms rate-limit window, the pending check at the start of each window
and whenever the bitmap runs dry, a sync when the bitmap's dirty bytes are below the threshold.
The simulator must agree with it exactly on small RAMs with zero pages, hot pages and cold pages.
Two modelling conventions both share (and QEMU differs from by at most a page per window): a
window sends what fits in its budget (QEMU sends until it has gone over, and drops the excess
at the next window), and a window whose budget is spent checks nothing until the next one."""

from __future__ import annotations

import numpy as np
import pytest
from replay_helpers import hot_set, write_trace

from calm.replay.cost import in_pages, parse_cost
from calm.replay.dirty import DirtySource, TraceSource
from calm.replay.layout import RamLayout
from calm.replay.policies import Qemu
from calm.replay.policies.qemu import MAX_THROTTLE_BPS
from calm.replay.simulator import simulate
from calm.replay.trace_map import map_trace

P, STEP = 4096, 0.1
F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), P, STEP)


class ListSource(DirtySource):
    """Writes given per step (footprint pages), looped, on a layout with zero runs."""

    def __init__(self, layout: RamLayout, writes: list[np.ndarray], step: float = STEP) -> None:
        self.layout, self.writes = layout, [np.asarray(w, dtype=np.int64) for w in writes]
        self.page_size, self.step_seconds = P, step

    def dirty(self, step: int) -> np.ndarray:
        return self.writes[step % len(self.writes)]

    @property
    def mean_p(self) -> float:
        return 0.01


def guest_writes(layout, step_writes, t, fraction, done, log, zero) -> int:
    """The writes of step t made by `fraction` of it, beyond the first `done` already made: the
    simulator spreads a step's written pages evenly over the step in an order drawn per step;
    QEMU logs each in its dirty log. Returns how many are made by then."""
    order = np.random.default_rng([0x5EED, t]).permutation(len(step_writes))
    k = len(step_writes) if fraction >= 1.0 else int(fraction * len(step_writes))
    for j in np.asarray(step_writes)[order[done:k]]:
        page = int(layout.position[j])
        log[page] = True
        zero[page] = False
    return max(k, done)


def qemu_reference(layout: RamLayout, writes, rate_bytes: int, link_bytes: float, limit_s: float, max_steps: int,
                   windows: int = 1, step: float = STEP):
    """QEMU's pre-copy, page by page (see the module docstring); `windows` rate-limit windows of
    100 ms per trace step, at the start of each the migration thread checks what is pending.
    Returns a dict of results, None if it never switches over."""
    M = layout.n_pages
    footprint_at = {int(p): j for j, p in enumerate(layout.position)}
    zero = np.zeros(M, dtype=bool)
    for a, b in zip(layout.zero_start, layout.zero_end):
        zero[a:b] = True
    bitmap = np.ones(M, dtype=bool)  # ram_init_bitmaps: every page dirty, and one sync
    log = np.zeros(M, dtype=bool)
    syncs, cursor, credit, last_bytes = 1, 0, 0.0, 0.0
    normal = duplicate = 0
    sent_bytes = 0
    for t in range(max_steps):
        threshold = last_bytes / step * limit_s  # measured over the last window (migration_update_counters)
        budget = credit + rate_bytes
        used = 0
        done = None
        made = 0  # of this step's writes
        window, check = 1, True  # migration_iteration_run at the start of each window ...
        window_start = 0
        cheapest = 9 if layout.has_zero_pages else P + 8
        while True:
            if budget * window / windows - used < cheapest:  # this window's rate limit is reached
                if window == windows:
                    break
                window, check = window + 1, True
                threshold = (used - window_start) / 0.1 * limit_s  # migration_update_counters
                window_start = used
                continue
            remaining = int(bitmap.sum())
            if remaining == 0 or (check and remaining * P < threshold):  # ... and when the bitmap runs dry
                if used:  # the guest ran meanwhile: the writes made by now (a convention, see guest_writes)
                    made = guest_writes(layout, writes[t % len(writes)], t, used / rate_bytes, made, log, zero)
                if threshold == 0 and remaining == 0:
                    done = "empty"
                    break
                bitmap |= log  # migration_bitmap_sync
                log[:] = False
                syncs += 1
                pending = int(bitmap.sum()) * P
                if pending == 0 or pending < threshold:
                    done = "fits"
                    break
                check = False
                continue
            # find_dirty_block: the next dirty page from the cursor, wrapping
            ahead = np.flatnonzero(bitmap[cursor:])
            page = cursor + int(ahead[0]) if ahead.size else int(np.flatnonzero(bitmap)[0])
            cost = 9 if zero[page] else P + 8
            if used + cost > budget * window / windows + 1e-6:  # the rate limit of this window
                if window == windows:
                    break
                window, check = window + 1, True
                threshold = (used - window_start) / 0.1 * limit_s
                window_start = used
                continue
            check = False
            bitmap[page] = False
            used += cost
            cursor = page + 1
            duplicate += bool(zero[page])
            normal += not zero[page]
        sent_bytes += used
        if done:
            precopy = t + min(used / rate_bytes, 1.0)
            break
        credit, last_bytes = budget - used, (used - window_start) * windows
        guest_writes(layout, writes[t % len(writes)], t, 1.0, made, log, zero)
    else:
        return None
    # migration_completion: one more sync, then everything at the link's speed
    bitmap |= log
    syncs += 1
    final = np.flatnonzero(bitmap)
    final_zero = int(zero[final].sum())
    final_bytes = (final.size - final_zero) * (P + 8) + final_zero * 9
    return {"precopy_time": precopy * step, "downtime": final_bytes / link_bytes, "syncs": syncs,
            "normal_pages": normal + final.size - final_zero, "zero_pages": duplicate + final_zero,
            "bytes_sent": sent_bytes + final_bytes, "final_pages": int(final.size), "stop": done,
            "unused": footprint_at}


CASES = [
    # RAM pages, zero runs, footprint positions, writes per step (footprint indices), pages/step
    ("hot set, no zero pages", 600, [], list(range(0, 600, 6)), [range(0, 40)] * 3 + [range(20, 60)], 50),
    ("zero pages sent as headers", 900, [(100, 500), (700, 880)], list(range(0, 900, 9)),
     [range(0, 30), range(10, 25), range(50, 90)], 40),
    ("footprint zero until written", 400, [(0, 400)], list(range(0, 400, 4)), [range(0, 15), range(5, 40)], 30),
    ("does not converge", 300, [], list(range(0, 300, 2)), [range(0, 150)], 40),
]


@pytest.mark.parametrize("name,M,zeros,positions,writes,k", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("limit_s", [0.05, 0.3])
@pytest.mark.parametrize("step", [0.1, 0.5])
def test_qemu_policy_agrees_with_a_page_by_page_reference(name, M, zeros, positions, writes, k, limit_s, step):
    layout = RamLayout(M, np.array(positions), np.array([z[0] for z in zeros], dtype=np.int64),
                       np.array([z[1] for z in zeros], dtype=np.int64), kind="test")
    writes = [np.array(list(w)) for w in writes]
    windows = round(step / 0.1)
    rate_bytes = k * windows * (P + 8)  # max-bandwidth: exactly k pages of data and header a window
    link = 4 * rate_bytes  # the link is faster than max-bandwidth
    bw_bps, link_pages = rate_bytes * 8 / step, link / P
    ref = qemu_reference(layout, writes, rate_bytes, link / step, limit_s, 400, windows, step)
    step_F = in_pages(parse_cost("mm1:rate=12,size=1MiB,sla=1s"), P, step)
    r = simulate(ListSource(layout, writes, step), Qemu(bw_bps, limit_s), link_pages, step_F, max_steps=400)
    if ref is None:  # QEMU never switches over: the simulator says so
        assert r.forced and "does not converge" in name
        return
    assert not r.forced
    assert r.precopy_time == pytest.approx(ref["precopy_time"], abs=1e-9)
    assert r.downtime == pytest.approx(ref["downtime"], rel=1e-12)
    for key in ("syncs", "normal_pages", "zero_pages", "final_pages"):
        assert getattr(r, key) == ref[key], key
    assert r.bytes_sent == pytest.approx(ref["bytes_sent"], rel=1e-12)


def test_default_max_bandwidth_is_qemus_max_throttle_capped_by_the_link(tmp_path):
    path = write_trace(tmp_path / "t.h5", hot_set(0, 10), n_steps=5, interval=STEP)
    src = TraceSource(map_trace(path), 262144)  # 1 GiB
    assert MAX_THROTTLE_BPS == 128 * 2**20 * 8
    fast = simulate(src, Qemu(), 10e9 / 8 / P * STEP, F)  # 10 Gbit/s link: 128 MiB/s of stream
    stream = fast.sent[:50].sum() * (P + 8)  # the stream counts the page headers
    assert stream <= 50 * 128 * 2**20 * STEP < stream + P + 8
    assert fast.options["capped_by_link"] is False
    slow = simulate(src, Qemu(), 1e9 / 8 / P * STEP, F)  # 1 Gbit/s < 128 MiB/s: the link caps it
    assert slow.options["capped_by_link"] is True
    stream = slow.sent[:50].sum() * (P + 8)
    assert stream <= 50 * 1e9 / 8 * STEP < stream + P + 8


def test_final_copy_runs_at_the_link_not_at_max_bandwidth(tmp_path):
    path = write_trace(tmp_path / "t.h5", hot_set(0, 300), n_steps=5, interval=STEP)
    src = TraceSource(map_trace(path), 4096)
    B = 2000.0  # pages/step of link; max-bandwidth is 100 pages/step
    r = simulate(src, Qemu(100 * P * 8 / STEP, downtime_limit_s=1.0), B, F)
    assert not r.forced and r.final_pages >= 300
    assert r.downtime == pytest.approx(r.final_pages * (P + 8) / P / B * STEP)
    assert r.bytes_sent == pytest.approx(r.pages_sent * (P + 8))
    assert r.syncs == r.rounds + 2  # setup, one per pass after the first, the sync after which it stopped


def test_avail_switchover_bandwidth_replaces_the_measured_one(tmp_path):
    """400 hot pages written every step, more than the 299 pages a step that max-bandwidth lets
    through: what is dirty at a sync grows back to the hot set, above the measured bandwidth x
    100 ms (300 pages), and QEMU never switches over. Declaring twice that bandwidth available for
    the switch-over (QEMU 8.2's avail-switchover-bandwidth) doubles the threshold, and it does."""
    path = write_trace(tmp_path / "t.h5", hot_set(0, 400), n_steps=5, interval=STEP)
    src = TraceSource(map_trace(path), 4096)
    rate = 300 * P * 8 / STEP
    stuck = simulate(src, Qemu(rate, downtime_limit_s=0.1), 4000.0, F, max_steps=300)
    assert stuck.forced and stuck.stop_reason == "time limit (300 steps)"
    sooner = simulate(src, Qemu(rate, downtime_limit_s=0.1, switchover_bandwidth_bps=2 * rate), 4000.0, F,
                      max_steps=300)
    assert not sooner.forced and "downtime limit" in sooner.stop_reason
    assert sooner.final_pages * P < 2 * rate / 8 * 0.1
