"""Trace-driven simulator of in-band pre-copy live migration (docs/model.md, section 5).

Time advances in *steps*: one step is one sample of the trace (`DirtySource.step_seconds`
seconds; the uniform model's time unit for synthetic traces). Bandwidths are in pages per step:
R bit/s is R / 8 / page_size * step_seconds pages per step (see `replay.scenario`).

Each step, following the model's copy-then-dirty convention (docs/model.md, section 2):
1. the policy picks a rate b <= B (or stops, at step boundaries, or at a sync point mid-step);
2. pages not clean at the destination are sent, in the order of the current pass, for up to b
   pages of data (a fractional b carries over, so 2.5 pages/step sends 2, 3, 2, 3...; a policy's
   wire format may make a zero page or a header cost less or more); the service gets B - b
   and cost accrues at F(B - b) for the part of the step the migration was sending and at F(B)
   for an idle tail (a round that ran out of pages inside the step);
3. the pages the trace wrote in that step become dirty again, whether or not they were just sent.

When the policy stops (or the time limit forces it), the remaining dirty pages are copied at the
policy's final rate (full bandwidth B unless capped) while the service is down: cost rate 1.
Cost, like the slides' table, is reported in seconds of violated SLA.

Cost grows with what happens, not with RAM size: state is kept per footprint page only (the
pages the trace ever writes, `replay.layout`); the never-written rest of RAM is a cursor and a
count that the first pass drains (`replay.passes`). A step costs O(pages written + footprint
pages sent + log F); a new pass O(F). Where a policy holds a fixed rate over a looped trace
(`Hold`), `replay.stride` advances many steps at once, with the same result step by step.

The default time limit scales with what can happen: at most DEFAULT_MAX_RAM_TIMES x the RAM's
send time at full bandwidth (the limit before the footprint engine, which lets a policy as slow as
1% of the link finish its first pass); and once the first pass has sent every page, after which
only the footprint can be dirty, at most DEFAULT_FOOTPRINT_TIMES x the footprint's send time or
DEFAULT_LOOPS loops of the trace more, whichever is longer (at least MIN_STEPS steps). On a RAM
much larger than the footprint (1 TiB for a 100 MiB service) that is the first pass plus minutes
instead of 100 RAM send times (a day); on a small one it changes nothing. It cuts open-ended
pre-copies (a policy that does not converge); a policy holding its rate to a planned stop step
(Fixed) may reach that step. An explicit `max_steps` cuts everything.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable

import numpy as np

from calm.core.errors import CalmError
from calm.replay.cost import PagesCost
from calm.replay.dirty import DirtySource
from calm.replay.passes import EPS, Pass, affordable
from calm.replay.policies.base import Hold, MigrationContext, PageLog, Policy, Stop, View
from calm.replay.sim_result import SimResult, StepSeries
from calm.replay.sync_step import sync_step

DEFAULT_MAX_RAM_TIMES = 100  # the first pass: at most this many RAM send times at full bandwidth
DEFAULT_FOOTPRINT_TIMES = 1000  # after it: this many footprint send times ...
DEFAULT_LOOPS = 10  # ... or this many loops of the trace, whichever is longer
MIN_STEPS = 1000
PROGRESS_EVERY_S = 0.5
_NONE_SENT = np.empty(0, np.int64)


class Migration:
    """The state of one simulated migration; `run()` plays it to the end."""

    def __init__(self, source: DirtySource, policy: Policy, bandwidth: float, cost: PagesCost,
                 max_steps: int | None, strides: bool, progress: Callable[[str], None] | None) -> None:
        lay = source.layout
        self.source, self.policy, self.layout, self.cost = source, policy, lay, cost
        self.M, self.F, self.B = lay.n_pages, lay.footprint, float(bandwidth)
        if not self.B > 0:
            raise CalmError("the total bandwidth must be positive")
        self.ctx = MigrationContext(self.M, self.B, source.page_size, source.step_seconds, cost, source.mean_p,
                                    source.page_p, self.F)
        policy.begin(self.ctx)
        P = source.page_size
        wire = policy.wire
        self.normal = (P + wire.header_bytes) / P  # page units per page of data
        self.zero = self.normal if wire.zero_page_bytes is None else wire.zero_page_bytes / P
        self.track_zero = lay.has_zero_pages
        self.uniform = self.zero == self.normal or not self.track_zero
        # a policy that learns from every step's log, or asks for bitmap syncs of its own, sees every step
        self.observing = type(policy).observe is not Policy.observe
        self.resyncs = type(policy).wants_sync is not Policy.wants_sync
        self.strides = (strides and source.write_index is not None and self.uniform and not policy.skip_redirtied
                        and not self.observing and not self.resyncs)
        self.max_steps = max_steps
        self.first_pass_limit = max(MIN_STEPS, math.ceil(DEFAULT_MAX_RAM_TIMES * self.M / self.B))
        loops = DEFAULT_LOOPS * (source.loop_steps or 0)
        self.after_first_pass = max(MIN_STEPS, math.ceil(DEFAULT_FOOTPRINT_TIMES * self.F / self.B), loops)
        self.limit = max_steps if max_steps is not None else self.first_pass_limit
        self.progress = progress
        # per footprint page
        F = self.F
        self.need = np.ones(F, dtype=bool)
        self.written_in_round = np.zeros(F, dtype=bool)
        self.resend = policy.resend_written_since_sync
        self.track_round = not policy.continuous or policy.skip_redirtied or self.resend
        self.just_sent = np.zeros(F, dtype=bool)  # pages sent in the current step
        self._sent_now: list[np.ndarray] = []
        self.zero_now = lay.footprint_zero.copy() if lay.has_zero_pages else None
        self.ordered = type(policy).order is not Policy.order
        self.own_sync = type(policy).at_sync_point is not Policy.at_sync_point
        interval = policy.check_interval_s
        self.windows = max(1, round(source.step_seconds / interval)) if interval else 1
        self.simple = (self.windows == 1 and not self.own_sync and self.uniform
                       and type(policy).sync_threshold is Policy.sync_threshold)
        self.log_writes = np.zeros(F, dtype=np.int64) if self.ordered else None
        self.last_write = np.full(F, -1, dtype=np.int64) if self.ordered else None
        # counters
        self.step, self.n_dirty, self.rounds = 0, self.M, 1
        self.round_start = self.round_sent = self.round_skipped = 0
        self.last = (0, 0, 0, 0)  # sent, skipped, steps, dirtied of the last finished round
        self.total_sent = self.written = self.clean_exposure = self.clean_dirtied = self.sent_dirtied = 0
        self.zero_sent = 0
        self.cursor = 0  # RAM position after the last page sent
        self.last_step_bytes = 0.0
        self.credit, self.precopy_cost, self.partial = 0.0, 0.0, 0.0
        self.first_pass_end: int | None = None
        self.series = StepSeries()
        self.hold: Hold | None = None
        self.synced_at_stop = False
        self._written_part = self._newly_part = 0  # writes of the current step applied at a sync point
        self._cost_cache: dict[float, float] = {}
        self.f_idle = float(cost(self.B))
        self._dirty = source.dirty
        self.pass_ = self._new_pass()

    # -- helpers -----------------------------------------------------------------------------
    def F_of(self, b: float) -> float:
        c = self._cost_cache.get(b)
        if c is None:
            c = self._cost_cache[b] = float(self.cost(self.B - b))
        return c

    def view(self, round_done: bool) -> View:
        s, k, st, d = self.last
        return View(self.step, self.n_dirty, self.rounds, round_done, s, k, st, d, self.total_sent, self.written,
                    self.clean_exposure, self.clean_dirtied, self.sent_dirtied, self.pass_.left,
                    self.last_step_bytes)

    def _new_pass(self) -> Pass:
        order = None
        if self.ordered:
            log = PageLog(self.step, self.M, self.layout.position, self.need.copy(), self.log_writes.copy(),
                          self.last_write.copy(), self.cursor)
            order = self.policy.order(log)
        cold_cursor = self.pass_.c if hasattr(self, "pass_") else 0
        return Pass(self.layout, self.need, cold_cursor, order)

    def begin_pass(self, resync: bool = False) -> None:
        """A bitmap sync and a new pass; a policy's own `resync` while the first pass is still
        scanning the never-written RAM does not end that first pass (the time limit counts from it)."""
        if self.first_pass_end is None and not (resync and self.pass_.scan):
            self._end_first_pass()
        self.pass_ = self._new_pass()
        self.written_in_round[:] = False
        self.rounds += 1

    def _end_first_pass(self) -> None:
        self.first_pass_end = self.step
        if self.max_steps is None:  # never longer than 100 RAM send times, as before
            self.limit = min(self.first_pass_limit, self.step + self.after_first_pass)

    def bytes_of(self, items: int, zeros: int) -> float:
        P = self.ctx.page_size
        return (items - zeros) * self.normal * P + zeros * self.zero * P

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> SimResult:
        policy = self.policy
        reason, forced, stop = "", False, None
        next_report = _time.monotonic() + PROGRESS_EVERY_S
        while True:
            round_done = not policy.continuous and self.pass_.done
            if round_done:
                self.last = (self.round_sent, self.round_skipped, self.step - self.round_start,
                             int(np.count_nonzero(self.written_in_round)))
            if self.first_pass_end is None and self.rounds == 1 and self.pass_.done:
                self._end_first_pass()
            if self.n_dirty == 0:
                reason = "all pages clean"
                break
            if self.step >= self.limit and not self._planned():
                reason, forced = f"time limit ({self.limit} steps)", True
                break
            hold = self.hold
            if hold is None or round_done or self._hold_over(hold):
                decision = policy.decide(self.view(round_done))
                if isinstance(decision, Stop):
                    reason, stop = decision.reason, decision
                    self.synced_at_stop = decision.after_sync
                    break
                hold = self.hold = decision if isinstance(decision, Hold) else None
                b = float(decision.rate if hold is not None else decision)
                if not 0 <= b <= self.B * (1 + 1e-12):
                    raise ValueError(f"policy {policy.name} asked for {b} pages/step outside [0, {self.B}]")
                self.b = min(b, self.B)
                if round_done:
                    self.begin_pass()
                    self.round_start, self.round_sent, self.round_skipped, self.credit = self.step, 0, 0, 0.0
            if self.strides and hold is not None:
                from calm.replay.stride import try_stride
                if try_stride(self):
                    continue
            if self.resyncs and policy.continuous and policy.wants_sync(self.step):
                self.begin_pass(resync=True)  # the policy's order is stale: sync the bitmap and order anew
            stop = self.one_step()
            if stop is not None:
                reason = stop.reason
                self.synced_at_stop = stop.after_sync
                break
            if self.progress and not self.step & 255 and _time.monotonic() > next_report:
                next_report = _time.monotonic() + PROGRESS_EVERY_S
                self.progress(f"{self.step * self.ctx.step_seconds:,.0f} s simulated, pass {self.rounds}")
        return self.finish(reason, forced)

    def _planned(self) -> bool:
        """The default limit cuts open-ended pre-copies only, not a policy's own planned stop
        step (Fixed's T*); an explicit max_steps cuts everything."""
        h = self.hold
        return self.max_steps is None and h is not None and h.until_step is not None and self.step <= h.until_step

    def _hold_over(self, hold: Hold) -> bool:
        if hold.until_step is not None and self.step >= hold.until_step:
            return True
        if hold.until_clean is not None and self.M - self.n_dirty >= hold.until_clean:
            return True
        return hold.until_pass_left is not None and self.pass_.left <= hold.until_pass_left

    def one_step(self) -> Stop | None:
        """Sends one step's pages and applies that step's writes (`replay.sync_step` for
        policies with sync points or check windows); a Stop if a sync point stopped the
        migration mid-step."""
        if self.simple:
            self._simple_step()
            return None
        return sync_step(self)

    def _simple_step(self) -> None:
        """One step of a policy with no sync rule of its own, no check windows and one cost per
        page (all but QEMU): the general step without its bookkeeping, same arithmetic."""
        b, policy = self.b, self.policy
        zero_now = self.zero_now
        avail = self.credit + b
        want = int(avail + EPS) if self.normal == 1.0 else affordable(avail, self.normal)
        t = self.pass_.take(want, self.written_in_round if policy.skip_redirtied else None, zero_now)
        got = self.account(t)
        zeros = self.zeros_of(t, zero_now)
        if policy.continuous and got < want:  # the pass ran out: sync and go on, once a step
            self.begin_pass()
            t2 = self.pass_.take(want - got, None, zero_now)
            got += self.account(t2)
            zeros += self.zeros_of(t2, zero_now)
        spent = got * self.normal
        if got < want:
            busy, self.credit = (spent / b if b > 0 else 0.0), 0.0
        else:
            busy, self.credit = 1.0, self.credit + b - spent
        self.close_step(b, got, zeros, t.skipped, busy)

    def zeros_of(self, t, zero_now) -> int:
        if zero_now is None:
            return 0
        return int(np.count_nonzero(zero_now[t.pages])) + t.cold_zero

    def account(self, t) -> int:
        """Marks what a take sent as clean; returns the pages sent."""
        pages = t.pages
        cleaned = len(pages)
        if cleaned:
            if self.resend:  # still logged since the last sync: it goes again after the next one
                stays = self.written_in_round[pages]
                self.need[pages] = stays
                cleaned -= int(np.count_nonzero(stays))
            else:
                self.need[pages] = False
            self.just_sent[pages] = True
            self._sent_now.append(pages)
        if t.end >= 0:
            self.cursor = t.end
        self.n_dirty -= cleaned + t.cold
        return len(pages) + t.cold

    def _count_sent(self, n_sent: int, zeros: int, skipped: int) -> None:
        """Counts a step's pages; `last_step_bytes` is what the next step measures its bandwidth
        on (a policy with check windows: the last window's bytes, scaled to a step)."""
        self.round_sent += n_sent
        self.round_skipped += skipped
        self.total_sent += n_sent
        self.zero_sent += zeros
        self.last_step_bytes = self.bytes_of(n_sent, zeros)

    def close_partial(self, b: float, n_sent: int, zeros: int, skipped: int, busy: float) -> None:
        """The step a sync point stopped: it lasted `busy` of a step; the guest then pauses."""
        self._count_sent(n_sent, zeros, skipped)
        if busy > 0:
            self.precopy_cost += self.F_of(b) * busy
            self.partial = busy
            self.series.add(self.step * self.ctx.step_seconds, b, n_sent, self.n_dirty, self.precopy_cost)

    def _write(self, d: np.ndarray) -> int:
        """Applies writes to pages `d`; returns how many were clean."""
        need = self.need
        newly = int(d.size - np.count_nonzero(need[d]))
        need[d] = True
        if self.track_round:  # round-based: each round's dirtied count (and Xen's skips)
            self.written_in_round[d] = True
        if self.track_zero:
            self.zero_now[d] = False
        if self.ordered:
            self.log_writes[d] += 1
            self.last_write[d] = self.step
        self.n_dirty += newly
        self.clean_dirtied += newly
        return newly

    def write_part(self, fraction: float) -> None:
        """At a sync point inside a step, the writes the guest made so far: the step's written
        pages are taken as spread evenly over it, in an order drawn once per step (the same for
        every policy), and the first `fraction` of them are applied now, the rest at its end."""
        d = self.source.dirty(self.step)
        order = np.random.default_rng([0x5EED, self.step]).permutation(d.size)
        k = int(fraction * d.size)
        done = self._written_part
        if k > done:
            self._newly_part += self._write(d[order[done:k]])
            self._written_part = k

    def close_step(self, b: float, n_sent: int, zeros: int, skipped: int, busy: float) -> None:
        self.precopy_cost += self.F_of(b) * busy + self.f_idle * (1.0 - busy)
        self._count_sent(n_sent, zeros, skipped)
        s = self.ctx.step_seconds
        d = self._dirty(self.step)
        sent = _NONE_SENT
        if self._sent_now:
            self.sent_dirtied += int(np.count_nonzero(self.just_sent[d]))
            if self.observing:
                sent = self._sent_now[0] if len(self._sent_now) == 1 else np.concatenate(self._sent_now)
            for pages in self._sent_now:
                self.just_sent[pages] = False
            self._sent_now.clear()
        if self._written_part:  # part of this step's writes went in at a sync point
            order = np.random.default_rng([0x5EED, self.step]).permutation(d.size)
            clean_before = self.M - self.n_dirty + self._newly_part
            self._write(d[order[self._written_part:]])
            self._written_part = self._newly_part = 0
        else:
            clean_before = self.M - self.n_dirty
            self._write(d)
        if self.observing:  # what the dirty log shows a real engine: O(pages sent + written)
            self.policy.observe(sent, n_sent - len(sent), d)
        self.written += len(d)
        self.clean_exposure += clean_before
        self.series.add(self.step * s, b, n_sent, self.n_dirty, self.precopy_cost)
        self.step += 1

    def finish(self, reason: str, forced: bool) -> SimResult:
        policy, s = self.policy, self.ctx.step_seconds
        n_final = self.n_dirty
        final_zero = 0
        if self.track_zero:
            final_zero = int(np.count_nonzero(self.need & self.zero_now))
            final_zero += self.layout.cold_zero_between(self.pass_.c, self.M)
        final_units = (n_final - final_zero) * self.normal + final_zero * self.zero
        if self.uniform and self.normal == 1.0:
            final_units = n_final
        downtime = final_units / policy.final_rate()
        elapsed = self.step + self.partial
        to_bps = 8.0 * self.ctx.page_size / s
        t, rate, sent, dirty, cost_so_far = self.series.arrays()
        zero_total = self.zero_sent + final_zero
        pages_sent = self.total_sent + n_final
        syncs = self.rounds + 1 + (1 if self.synced_at_stop else 0)
        return SimResult(
            algorithm=policy.name, cost=(self.precopy_cost + downtime) * s, precopy_cost=self.precopy_cost * s,
            total_time=(elapsed + downtime) * s, precopy_time=elapsed * s, downtime=downtime * s,
            pages_sent=pages_sent, final_pages=n_final, rounds=self.rounds, stop_reason=reason,
            forced=forced, options={**policy.describe(), **({"wire": policy.wire.describe()}
                                                              if policy.wire.header_bytes or policy.wire.zero_page_bytes
                                                              is not None else {})},
            bytes_sent=self.bytes_of(pages_sent, zero_total), zero_pages=zero_total,
            normal_pages=pages_sent - zero_total, syncs=syncs,
            time=t, rate_bps=rate * to_bps, sent=sent, dirty=dirty, cost_so_far=cost_so_far * s,
        )


def simulate(source: DirtySource, policy: Policy, bandwidth: float, cost: PagesCost,
             max_steps: int | None = None, *, strides: bool = True,
             progress: Callable[[str], None] | None = None) -> SimResult:
    """Migrates `source.n_pages` pages at total bandwidth `bandwidth` (pages/step) with `policy`.

    `cost` is F in pages per step (`replay.cost.in_pages`). `max_steps` bounds the pre-copy
    (default: see the module docstring). `strides=False` forces step-by-step simulation (the
    reference the closed-form strides are tested against). `progress` gets a short status line
    about every half second of wall time on long replays."""
    return Migration(source, policy, bandwidth, cost, max_steps, strides, progress).run()
