"""calm.replay.live without a QEMU: how QEMU's query-migrate figures become a policy's view and its
answers become max-bandwidth values, and the cost model applied to a real run. The real
migrations are in test_migrate_cli.py (slow); these pin the arithmetic they rely on, with QEMU's
own status type (calm.qemu.migration.MigrationStatus) as the input."""

from __future__ import annotations

import math

import pytest

from calm.core.errors import CalmError
from calm.qemu.migration import MigrationStatus
from calm.replay.cost import parse_cost, table_cost
from calm.replay.live import PAGE_SIZE, make_controller, modelled_cost, p_from_dirty_rate
from calm.replay.policies.qemu import PAGE_HEADER_BYTES

RAM = 256 << 20
PAGES = RAM // PAGE_SIZE
CURRENT = {"max-bandwidth": 134217728, "downtime-limit": 300}


def _status(remaining_pages: int, syncs: int, rate: int = 0, sent: int = 0) -> MigrationStatus:
    return MigrationStatus("active", remaining=remaining_pages * PAGE_SIZE, total=RAM, dirty_sync_count=syncs,
                           dirty_pages_rate=rate, normal=sent, transferred=sent * (PAGE_SIZE + PAGE_HEADER_BYTES))


def test_rates_go_to_qemu_as_bytes_per_second_with_the_page_header():
    controller = make_controller("clark", link_bps=400e6, cost=parse_cost("mm1:rate=12,size=1MiB,sla=1s"),
                                 step_s=0.5, prior_p=0.01, current=CURRENT, clark_min_bps=100e6)
    first = controller.begin(RAM)
    # Clark's first round runs at its minimum: 100 Mbit/s of page data, plus 8 bytes per page
    assert first.rate_bytes_s == pytest.approx(100e6 / 8 * (PAGE_SIZE + PAGE_HEADER_BYTES) / PAGE_SIZE)
    assert not first.switchover and controller.downtime_limit_ms == 1 and controller.steered


def test_a_round_is_a_pass_between_two_bitmap_syncs():
    controller = make_controller("clark", link_bps=400e6, cost=parse_cost("mm1:rate=12,size=1MiB,sla=1s"),
                                 step_s=0.5, prior_p=0.01, current=CURRENT, clark_min_bps=100e6,
                                 clark_increment_bps=50e6)
    controller.begin(RAM)
    for step in range(1, 11):  # the first pass: no sync yet, the rate holds
        held = controller.step(step * 0.5, _status(PAGES - 3000 * step, 1, sent=3000 * step))
        assert held.rate_bytes_s == pytest.approx(controller.bytes_per_s(controller.policy.min))
    # QEMU synced, seen at the 11th step: 20,000 pages found dirty over an 11-step round, + the increment
    after = controller.step(5.5, _status(20000, 2, rate=3000, sent=33000))
    expected = 20000 / 11 + 50e6 / 8 / PAGE_SIZE * 0.5
    assert after.rate_bytes_s == pytest.approx(controller.bytes_per_s(expected))
    # a later sync with almost nothing dirty: Clark stops (fewer than 256 KiB left)
    assert controller.step(6.0, _status(10, 3, rate=3000, sent=60000)).switchover


def test_calm_runs_on_qemus_measured_dirty_rate_once_there_is_one():
    controller = make_controller("calm", link_bps=1e9, cost=parse_cost("mm1:rate=12,size=1MiB,sla=1s"),
                                 step_s=0.5, prior_p=0.002, current=CURRENT)
    controller.begin(RAM)
    controller.step(0.5, _status(PAGES - 5000, 1, sent=5000))
    assert controller.p == 0.002 and controller.p_source == "prior"
    controller.step(1.0, _status(30000, 2, rate=4000, sent=70000))
    # 4000 pages/s x 0.5 s over the 35,536 clean pages
    assert controller.p == pytest.approx(4000 * 0.5 / (PAGES - 30000))
    assert controller.policy.p == controller.p and controller.p_source == "QEMU dirty-pages-rate"


def test_the_qemu_policy_holds_what_it_was_given_or_what_qemu_had():
    given = make_controller("qemu", link_bps=1e9, cost=parse_cost("mm1:rate=12,size=1MiB,sla=1s"), step_s=0.5,
                            prior_p=0.0, current=CURRENT, rate_bytes_s=25e6, downtime_limit_ms=100)
    assert (given.begin(RAM).rate_bytes_s, given.downtime_limit_ms, given.steered) == (25e6, 100, False)
    assert given.step(3.0, _status(1000, 4)).rate_bytes_s == 25e6
    kept = make_controller("qemu", link_bps=1e9, cost=parse_cost("mm1:rate=12,size=1MiB,sla=1s"), step_s=0.5,
                           prior_p=0.0, current=CURRENT)
    assert (kept.begin(RAM).rate_bytes_s, kept.downtime_limit_ms) == (134217728, 300)
    with pytest.raises(CalmError, match="unknown policy"):
        make_controller("xen", link_bps=1e9, cost=parse_cost("mm1:rate=12,size=1MiB,sla=1s"), step_s=0.5,
                        prior_p=0.0, current=CURRENT)


def test_calc_dirty_rate_becomes_a_per_step_probability():
    # 16 MiB/s = 4096 pages/s; over 0.5 s on 65,536 pages
    assert p_from_dirty_rate(16, RAM, 0.5) == pytest.approx(4096 * 0.5 / PAGES)


def test_the_cost_model_on_a_real_run_counts_precopy_steps_and_the_downtime():
    cost = table_cost([0, 100e6, 200e6], [1.0, 0.5, 0.0])
    samples = [{"t_s": 1.0, "status": "active", "transferred": 12_500_000},  # 100 Mbit/s: service 100 -> F 0.5
               {"t_s": 2.0, "status": "active", "transferred": 12_500_000},  # idle: service 200 -> F 0
               {"t_s": 2.5, "status": "active", "transferred": 25_000_000},  # 200 Mbit/s: F(0) = 1
               {"t_s": 3.0, "status": "completed", "transferred": 90_000_000}]  # the final copy: not counted
    assert modelled_cost(samples, 0.2, 200e6, cost) == pytest.approx(0.5 * 1 + 0 + 1.0 * 0.5 + 0.2)
    assert math.isinf(modelled_cost(samples, math.inf, 200e6, cost))
