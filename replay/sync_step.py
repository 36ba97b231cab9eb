"""One simulated step for policies with sync points or check windows (QEMU; any continuous
policy that overrides `at_sync_point` or `sync_threshold`), split from `replay.simulator`.

Sync points of a continuous policy: when its pass runs out, and at the start of every check
window (`Policy.check_interval_s`; QEMU checks its pending bytes once per 100 ms rate-limit
window) if the pass then holds fewer pages than `sync_threshold`. A sync point inside a step
first applies the writes the guest made so far in it (`Migration.write_part`). A Stop from a
sync point ends the pre-copy mid-step; nothing is written after it (the guest is paused).
"""

from __future__ import annotations

import numpy as np

from calm.replay.passes import EPS, affordable
from calm.replay.policies.base import Stop


def sync_step(m) -> Stop | None:
    """Sends one step's pages of migration `m` (`replay.simulator.Migration`) and applies that
    step's writes, or stops at a sync point."""
    policy, b = m.policy, m.b
    continuous = policy.continuous
    skip = m.written_in_round if policy.skip_redirtied else None
    zero_now = m.zero_now if m.track_zero else None
    sync_below = policy.sync_threshold(m.last_step_bytes) if continuous else 0.0
    avail = m.credit + b
    min_unit = min(m.normal, m.zero)
    nw = m.windows
    if m.uniform:
        want = int(avail + EPS) if m.normal == 1.0 else affordable(avail, m.normal)
        bound = want if nw == 1 else affordable(avail / nw, m.normal)
    else:
        bound = avail if nw == 1 else avail / nw
    got = zeros = skipped = 0
    spent = 0.0
    w, check = 1, sync_below > 0
    w_got = w_zeros = 0  # at the start of the current window
    rescanned = synced = ran_out = False
    stop = None
    while True:
        if (got >= bound) if m.uniform else (bound - spent < min_unit - EPS):
            if w >= nw:
                break
            w += 1  # a new rate-limit window: the bandwidth is measured over the last one, checked again
            bound = (want if w == nw else affordable(avail * w / nw, m.normal)) if m.uniform \
                else (avail if w == nw else avail * w / nw)
            m.last_step_bytes = m.bytes_of(got - w_got, zeros - w_zeros) * nw
            w_got, w_zeros = got, zeros
            sync_below = policy.sync_threshold(m.last_step_bytes)
            check = sync_below > 0
            continue
        left = m.pass_.left
        if continuous and (left == 0 or (check and left < sync_below)):
            if left == 0 and (synced or (rescanned and not m.own_sync)):
                ran_out = True  # nothing to send even after a sync
                break
            if m.own_sync and spent > 0 and b > 0:
                m.write_part(min(spent / b, 1.0))  # the guest ran on while the step's pages went
            stop = policy.at_sync_point(m.view(False))
            if stop is not None:
                break
            m.begin_pass()
            synced = rescanned = True
            check = False
            continue
        if m.uniform:
            t = m.pass_.take(bound - got, skip, zero_now)
            cost_t = (len(t.pages) + t.cold) * m.normal
        else:
            t = m.pass_.take_budget(bound - spent, m.normal, m.zero, m.zero_now, skip)
            cost_t = t.cost
        n_t = m.account(t)
        got += n_t
        spent += cost_t
        skipped += t.skipped
        zeros += m.zeros_of(t, zero_now)
        synced = check = False
        if not continuous:
            break  # a round-based policy's round that runs out leaves the step idle
        if n_t == 0 and m.pass_.left > 0:  # this window's budget cannot pay for the next page
            if w >= nw or m.uniform:
                break
            bound = -np.inf  # on to the next window
    if m.uniform:
        spent = got * m.normal
        ran_out = ran_out or (got < want and stop is None)
    else:
        ran_out = ran_out or (not continuous and m.pass_.left == 0 and avail - spent >= min_unit - EPS)
    window_bytes = m.bytes_of(got - w_got, zeros - w_zeros) * nw if nw > 1 else None
    if stop is not None:  # stopped mid-step: the step lasted as long as its sending
        m.close_partial(b, got, zeros, skipped, min(spent / b, 1.0) if b > 0 else 0.0)
        return stop
    if ran_out:
        busy, m.credit = (spent / b if b > 0 else 0.0), 0.0
    else:
        busy, m.credit = 1.0, m.credit + b - spent
    m.close_step(b, got, zeros, skipped, busy)
    if window_bytes is not None:  # the next step's first window measures this step's last one
        m.last_step_bytes = window_bytes
    return None
