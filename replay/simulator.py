"""Trace-driven simulator of in-band pre-copy live migration (docs/model.md, section 5).

Time advances in *steps*: one step is one sample of the trace (`DirtySource.step_seconds`
seconds; the uniform model's time unit for synthetic traces). Bandwidths are in pages per step:
R bit/s is R / 8 / page_size * step_seconds pages per step (see `replay.scenario`).

Each step, following the model's copy-then-dirty convention (docs/model.md, section 2):
1. the policy picks a rate b <= B (or stops, at step boundaries only);
2. up to b pages not clean at the destination are sent (a fractional b carries over, so 2.5
   pages/step sends 2, 3, 2, 3...); the service gets B - b and cost accrues at F(B - b) for the
   part of the step the migration was sending and at F(B) for an idle tail (a round that ran out
   of pages inside the step);
3. the pages the trace wrote in that step become dirty again, whether or not they were just sent.

When the policy stops (or the time limit forces it), the remaining dirty pages are copied at the
policy's final rate (full bandwidth B unless capped) while the service is down: cost rate 1.
Cost, like the slides' table, is reported in seconds of violated SLA.

State is one boolean per RAM page (dirty at the destination or not) plus the current round's page
list; the work per step is proportional to the pages sent and written, plus O(M) vector work
per round. No pages x steps matrix exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from calm.core.errors import CalmError
from calm.replay.cost import PagesCost
from calm.replay.dirty import DirtySource
from calm.replay.policies.base import MigrationContext, Policy, Stop, View

# Without a limit a policy that never converges (QEMU with a dirty rate above its bandwidth)
# would run forever; by default the pre-copy may last as long as sending the RAM this many times.
DEFAULT_MAX_RAM_TIMES = 100


@dataclass
class SimResult:
    """One simulated migration. Times in seconds, cost in seconds of violated SLA."""

    algorithm: str
    cost: float
    precopy_cost: float
    total_time: float
    precopy_time: float
    downtime: float
    pages_sent: int  # pre-copy + stop-and-copy
    final_pages: int  # sent during the downtime
    rounds: int
    stop_reason: str
    forced: bool  # stopped by the time limit, not by the policy
    options: dict = field(default_factory=dict)
    # Per-step series (one entry per pre-copy step).
    time: np.ndarray = field(default_factory=lambda: np.empty(0))  # step start, s
    rate_bps: np.ndarray = field(default_factory=lambda: np.empty(0))  # migration rate asked, bit/s
    sent: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # pages sent
    dirty: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # dirty pages after the step
    cost_so_far: np.ndarray = field(default_factory=lambda: np.empty(0))  # cumulative pre-copy cost, s

    def summary(self) -> dict:
        return {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in self.__dict__.items()
                if not isinstance(v, np.ndarray)}

    def to_dict(self, max_points: int = 5000) -> dict:
        """JSON-ready; series thinned to at most `max_points` evenly spaced steps."""
        n = len(self.time)
        idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).astype(np.int64)) if n else np.empty(0, np.int64)
        return {**self.summary(), "series": {
            "time_s": self.time[idx].tolist(), "bandwidth_bps": self.rate_bps[idx].tolist(),
            "sent_pages": self.sent[idx].tolist(), "dirty_pages": self.dirty[idx].tolist(),
            "cost_so_far": self.cost_so_far[idx].tolist()}}


class _Pages:
    """Dirty-page bookkeeping of one migration: which pages must still go, and the current round."""

    def __init__(self, n_pages: int) -> None:
        self.need = np.ones(n_pages, dtype=bool)
        self.written_in_round = np.zeros(n_pages, dtype=bool)
        self.round = np.arange(n_pages, dtype=np.int64)
        self.cursor = 0

    @property
    def round_done(self) -> bool:
        return self.cursor >= len(self.round)

    def new_round(self) -> None:
        self.round = np.flatnonzero(self.need)
        self.cursor = 0
        self.written_in_round[:] = False

    def take(self, n: int, skip_redirtied: bool) -> tuple[np.ndarray, int]:
        """Next n pages of the round in order (Xen skips pages written since the round began)."""
        if not skip_redirtied:
            out = self.round[self.cursor:self.cursor + n]
            self.cursor += len(out)
            return out, 0
        parts, skipped, got = [], 0, 0
        while got < n and self.cursor < len(self.round):
            window = self.round[self.cursor:self.cursor + 2 * (n - got)]
            keep = window[~self.written_in_round[window]]
            if len(keep) > n - got:  # stop right after the (n - got)-th kept page
                last = keep[n - got - 1]
                cut = int(np.searchsorted(window, last)) + 1  # round lists are sorted
                window, keep = window[:cut], keep[:n - got]
            self.cursor += len(window)
            skipped += len(window) - len(keep)
            parts.append(keep)
            got += len(keep)
        return (np.concatenate(parts) if parts else np.empty(0, np.int64)), skipped


def simulate(source: DirtySource, policy: Policy, bandwidth: float, cost: PagesCost,
             max_steps: int | None = None) -> SimResult:
    """Migrates `source.n_pages` pages at total bandwidth `bandwidth` (pages/step) with `policy`.

    `cost` is F in pages per step (`replay.cost.in_pages`). `max_steps` bounds the pre-copy
    (default: the time to send the RAM DEFAULT_MAX_RAM_TIMES times at full bandwidth)."""
    M, B = source.n_pages, float(bandwidth)
    if not B > 0:
        raise CalmError("the total bandwidth must be positive")
    if max_steps is None:
        max_steps = max(1000, math.ceil(DEFAULT_MAX_RAM_TIMES * M / B))
    ctx = MigrationContext(M, B, source.page_size, source.step_seconds, cost, source.mean_p)
    policy.begin(ctx)
    f_idle = float(cost(B))
    pages = _Pages(M)
    n_dirty = M
    rounds, round_start, round_sent, round_skipped = 1, 0, 0, 0
    last = dict(sent=0, skipped=0, steps=0, dirtied=0)
    total_sent = written = clean_exposure = clean_dirtied = sent_dirtied = 0
    just_sent = np.zeros(M, dtype=bool)  # pages sent in the current step
    credit, precopy_cost = 0.0, 0.0
    times, rates, sents, dirties, costs = [], [], [], [], []
    reason, forced = "", False
    step = 0
    while True:
        round_done = not policy.continuous and pages.round_done
        if round_done:
            last = dict(sent=round_sent, skipped=round_skipped, steps=step - round_start,
                        dirtied=int(np.count_nonzero(pages.written_in_round)))
        if n_dirty == 0:
            reason = "all pages clean"
            break
        if step >= max_steps:
            reason, forced = f"time limit ({max_steps} steps)", True
            break
        decision = policy.decide(View(step, n_dirty, rounds, round_done, last["sent"], last["skipped"],
                                      last["steps"], last["dirtied"], total_sent, written,
                                      clean_exposure, clean_dirtied, sent_dirtied))
        if isinstance(decision, Stop):
            reason = decision.reason
            break
        b = float(decision)
        if not 0 <= b <= B * (1 + 1e-12):
            raise ValueError(f"policy {policy.name} asked for {b} pages/step outside [0, {B}]")
        b = min(b, B)
        if round_done:
            pages.new_round()
            rounds += 1
            round_start, round_sent, round_skipped, credit = step, 0, 0, 0.0
        want = int(credit + b + 1e-9)
        sent, skipped = pages.take(want, policy.skip_redirtied)
        pages.need[sent] = False
        if policy.continuous and len(sent) < want:  # next pass over what is still dirty
            pages.new_round()
            rounds += 1
            more, _ = pages.take(want - len(sent), False)
            pages.need[more] = False
            sent = np.concatenate((sent, more))
        n_sent = len(sent)
        if n_sent < want:  # ran out of pages: busy for n_sent / b of the step, idle after
            busy, credit = (n_sent / b if b > 0 else 0.0), 0.0
        else:
            busy, credit = 1.0, credit + b - n_sent
        precopy_cost += float(cost(B - b)) * busy + f_idle * (1.0 - busy)
        round_sent += n_sent
        round_skipped += skipped
        total_sent += n_sent
        clean_before = M - (n_dirty - n_sent)
        d = source.dirty(step)
        newly = int(np.count_nonzero(~pages.need[d]))
        just_sent[sent] = True
        sent_dirtied += int(np.count_nonzero(just_sent[d]))
        just_sent[sent] = False
        pages.need[d] = True
        pages.written_in_round[d] = True
        n_dirty = n_dirty - n_sent + newly
        written += len(d)
        clean_exposure += clean_before
        clean_dirtied += newly
        times.append(step)
        rates.append(b)
        sents.append(n_sent)
        dirties.append(n_dirty)
        costs.append(precopy_cost)
        step += 1
    final_rate = policy.final_rate()
    downtime = n_dirty / final_rate
    s = source.step_seconds
    to_bps = 8.0 * source.page_size / s
    return SimResult(
        algorithm=policy.name, cost=(precopy_cost + downtime) * s, precopy_cost=precopy_cost * s,
        total_time=(step + downtime) * s, precopy_time=step * s, downtime=downtime * s,
        pages_sent=total_sent + n_dirty, final_pages=n_dirty, rounds=rounds, stop_reason=reason,
        forced=forced, options=policy.describe(),
        time=np.asarray(times, dtype=float) * s, rate_bps=np.asarray(rates) * to_bps,
        sent=np.asarray(sents, dtype=np.int64), dirty=np.asarray(dirties, dtype=np.int64),
        cost_so_far=np.asarray(costs) * s,
    )
