"""Many steps at once, in closed form, where a policy holds a fixed rate over a looped trace.

Why: a migration at a fixed rate spends most of its steps in one long pass (a 1 TiB first pass
at Clark's 100 Mbit/s minimum is 440,000 steps of 0.2 s). Step by step, each of those steps
applies the trace's writes; but within one pass at a fixed rate nothing the writes do changes
which pages the pass sends or when. So the simulator computes, for the K steps ahead:

- from the rate alone (the same carry-over arithmetic as a single step, run as a scalar loop):
  how many pages each step sends, N_k in all after step k;
- from the pass order: which footprint pages are among those N_K items, and the step sigma_j in
  which each is sent (`Pass.peek_ranks`); every other item is a cold page;
- from the looped trace (`replay.dirty.WriteIndex`): each page's first write at or after its send
  step (or after the stride's start for pages already clean), which makes it dirty again.

The per-step counts the policy would have seen (dirty pages, clean -> dirty transitions, pages
written in the step that sent them, cost so far) follow from bincounts of those steps, so a
stride costs O(F log E + K) however long it is, and ends exactly where the step-by-step
simulation would have asked the policy again (the hold's conditions, the pass's end, all pages
clean, the time limit). `tests/test_replay_engine.py` checks the two give identical results.
Policies that skip pages written during a round (Xen) or whose zero pages cost less than data
(QEMU on a trace's own memory) are simulated step by step.
"""

from __future__ import annotations

import math

import numpy as np

from calm.replay.passes import EPS, affordable

MIN_STRIDE = 32  # steps; shorter phases go step by step
PAGES_PER_STEP_EQUIVALENT = 500  # a stride costs about as much as one step per this many footprint pages


def try_stride(m) -> bool:
    """Advances the migration `m` (`replay.simulator.Migration`) by a stride if one is worth it."""
    hold, pass_, wi = m.hold, m.pass_, m.source.write_index
    b, L = m.b, pass_.left
    k_min = max(MIN_STRIDE, m.F // PAGES_PER_STEP_EQUIVALENT)
    if b <= 0 or L * m.normal < k_min * b:  # too short a phase to be worth it
        return False
    k_max = m.limit - m.step
    if hold.until_step is not None:  # the default limit does not cut a planned stop (simulator docstring)
        k_max = hold.until_step - m.step if m.max_steps is None else min(k_max, hold.until_step - m.step)
    if k_max < k_min:
        return False
    if hold.until_pass_left is not None and L <= hold.until_pass_left:
        return False
    K = min(k_max, math.ceil(L * m.normal / b) + 1)
    # items per step: the single step's arithmetic, as a scalar loop
    normal, credit, total = m.normal, m.credit, 0
    N = np.empty(K, dtype=np.int64)
    credits = np.empty(K, dtype=float)
    k = 0
    while k < K:
        avail = credit + b
        want = int(avail + EPS) if normal == 1.0 else affordable(avail, normal)
        if total + want > L:
            break  # this step would run out of pages: leave it to the single step
        total += want
        credit = credit + b - want * normal
        N[k], credits[k] = total, credit
        k += 1
        if total == L:
            break
    K = k
    if K < k_min:
        return False
    N, credits = N[:K], credits[:K]
    t0 = m.step
    pages, ranks = pass_.peek_ranks(int(N[-1]))
    sigma = np.searchsorted(N, ranks, side="right")  # the step (0-based) that sends each page
    everyone = np.arange(m.F, dtype=np.int64)
    nu_all = wi.next_write(everyone, t0)  # first write at or after t0, every footprint page
    nu_sent = wi.next_write(pages, t0 + sigma)  # first write at or after its send step
    clean = np.flatnonzero(~m.need)
    # a sent page turns clean unless (QEMU) it was written since the pass began, before it went
    cleaned = np.ones(pages.size, dtype=bool)
    if m.resend:
        cleaned = ~(m.written_in_round[pages] | (nu_all[pages] < t0 + sigma))
    rel_clean = nu_all[clean] - t0
    rel_sent = nu_sent[cleaned] - t0
    newly = np.bincount(rel_clean[rel_clean < K], minlength=K)[:K]
    newly += np.bincount(rel_sent[rel_sent < K], minlength=K)[:K]
    sent_dirtied = np.bincount(sigma[nu_sent - t0 == sigma], minlength=K)[:K]
    sent = np.diff(N, prepend=0)
    not_cleaned = np.bincount(sigma[~cleaned], minlength=K)[:K]
    turned_clean = np.cumsum(sent - not_cleaned)
    dirty = m.n_dirty - turned_clean + np.cumsum(newly)
    # where the step-by-step run would stop or ask the policy again: after a step that ends the
    # pass, cleans everything or reaches the hold's clean count; before a step that leaves the
    # pass short enough for the policy's answer to change (a mid-step sync could come in it)
    stop = (N == L) | (dirty == 0)
    if hold.until_clean is not None:
        stop |= m.M - dirty >= hold.until_clean
    hit = np.flatnonzero(stop)
    K = int(hit[0]) + 1 if hit.size else K
    if hold.until_pass_left is not None:
        short = np.flatnonzero(L - N[:K] <= hold.until_pass_left)
        K = int(short[0]) if short.size else K
    if K < k_min and not (hit.size and K == int(hit[0]) + 1 and K > 0):
        return False
    _commit(m, K, N, credits, pages, sigma, cleaned, nu_all, nu_sent, clean, sent, turned_clean, newly,
            sent_dirtied, dirty, t0, b)
    return True


def _commit(m, K, N, credits, pages, sigma, cleaned, nu_all, nu_sent, clean, sent, turned_clean, newly,
            sent_dirtied, dirty, t0, b) -> None:
    """Applies the first K steps of a stride to the migration's state."""
    m_credit0 = m.credit
    wi, t1 = m.source.write_index, t0 + K
    in_stride = sigma < K
    sent_pages = pages[in_stride]
    # moves the pass's cursors exactly as single steps would (and counts the cold zero pages)
    taken = m.pass_.take(int(N[K - 1]), None, m.zero_now if m.track_zero else None)
    if len(taken.pages) != len(sent_pages):  # same order, by construction
        raise AssertionError("stride and pass disagree on the pages sent")
    if m.track_zero:  # zero pages sent: zero at the start and not written before their send step
        m.zero_sent += int(np.count_nonzero(m.zero_now[sent_pages] & (nu_all[sent_pages] >= t0 + sigma[in_stride])))
        m.zero_sent += taken.cold_zero
    need = m.need
    now_clean = in_stride & cleaned
    need[pages[now_clean]] = False
    need[pages[now_clean & (nu_sent < t1)]] = True
    need[clean[nu_all[clean] < t1]] = True
    written = nu_all < t1
    if m.track_round:
        m.written_in_round |= written
    if m.track_zero:
        m.zero_now &= ~written
    if m.ordered:
        every = np.arange(m.F, dtype=np.int64)
        m.log_writes += wi.writes_before(every, t1) - wi.writes_before(every, t0)
        m.last_write = np.where(written, wi.last_write_before(every, t1), m.last_write)
    if taken.end >= 0:
        m.cursor = taken.end
    sent, newly, dirty = sent[:K], newly[:K], dirty[:K]
    before_writes = m.n_dirty - turned_clean[:K] + np.concatenate(([0], np.cumsum(newly)[:-1]))
    step_cost = m.F_of(b) * 1.0 + m.f_idle * 0.0
    cost_so_far = np.add.accumulate(np.concatenate(([m.precopy_cost], np.full(K, step_cost))))[1:]
    n_sent = int(N[K - 1])
    m.total_sent += n_sent
    m.round_sent += n_sent
    m.written += wi.written_between(t0, t1)
    m.clean_exposure += int(np.sum(m.M - before_writes))
    m.clean_dirtied += int(np.sum(newly))
    m.sent_dirtied += int(np.sum(sent_dirtied[:K]))
    m.n_dirty = int(dirty[-1])
    m.precopy_cost = float(cost_so_far[-1])
    m.credit = float(credits[K - 1])
    m.last_step_bytes = m.bytes_of(int(sent[-1]), 0)
    if m.windows > 1:  # what the last step's last check window measured (as in Migration.one_step)
        avail = (float(credits[K - 2]) if K > 1 else m_credit0) + b
        first_part = affordable(avail * (m.windows - 1) / m.windows, m.normal)
        m.last_step_bytes = m.bytes_of(int(sent[-1]) - first_part, 0) * m.windows
    s = m.ctx.step_seconds
    m.series.add_arrays((t0 + np.arange(K)) * s, np.full(K, b), sent.astype(np.int64), dirty.astype(np.int64),
                        cost_so_far)
    m.step = t1
    if m.progress:
        m.progress(f"{m.step * s:,.0f} s simulated, pass {m.rounds}")
