"""Clark's dynamic rate limiting as Xen implemented it: `ADAPTIVE_SAVE` in xc_domain_save.c
(Xen 3.x, tools/libxc), the variant of Clark et al. (NSDI 2005) that terminates
(docs/model.md, section 6).

Rounds as in Xen (`replay.policies.xen`: pages written again before their turn are skipped), sent
through a rate limiter:
- the rate starts at `START_MBIT_RATE` (100) and is capped at `MAX_MBIT_RATE` (500); `ratewrite`
  paces 100 KiB bursts every 781250 / mbit_rate us, so one "Mbit" there is 2^20 bit/s;
- after each round `print_stats` measures the round's dirtying rate (pages dirtied during it x
  page size / its wall time, in 10^6 bit/s) and, only if that is above the current rate, sets
  the rate to it + 50, capped at the maximum: the rate never falls;
- the stop test, made before that update with the rate the round ran at, is Xen's (29 rounds,
  sent + skipped < 50, 3 x RAM) or'ed with `(sent_this_iter > sent_last_iter) && RATE_IS_MAX()`
  (a round at the maximum rate that sent more than the one before); `sent_last_iter` starts at
  the RAM's size;
- the last round goes through the same limiter (every page write is a `ratewrite`), so the
  stop-and-copy runs at the current rate, not at the link's.

A scenario's link caps every rate (the limiter cannot send faster than the wire); the limiter's
own state follows the source, so RATE_IS_MAX holds at 500 even on a slower link.
"""

from __future__ import annotations

from calm.replay.policies.base import Hold, MigrationContext, Stop, View
from calm.replay.policies.xen import Xen

START_MBIT_RATE = 100
MAX_MBIT_RATE = 500
INCREMENT_MBIT = 50
LIMITER_MBIT_BPS = float(1 << 20)  # ratewrite's unit: 100 KiB per 781250 / mbit_rate us
STATS_MBIT_BPS = 1e6  # print_stats' unit: bytes / (ms x 125)


class ClarkAdaptive(Xen):
    name = "clark-adaptive"
    label = "Clark (Xen ADAPTIVE_SAVE)"

    def begin(self, ctx: MigrationContext) -> None:
        super().begin(ctx)
        self.mbit_rate = START_MBIT_RATE
        self.sent_last_iter = ctx.n_pages  # xc_domain_save: sent_last_iter = p2m_size

    def rate(self) -> float:
        """Pages per step of the current limiter rate, capped by the link."""
        return min(self.ctx.pages_per_step(self.mbit_rate * LIMITER_MBIT_BPS), self.ctx.bandwidth)

    def decide(self, view: View) -> Hold | Stop:
        if view.round_done:
            if view.last_round_sent > self.sent_last_iter and self.mbit_rate == MAX_MBIT_RATE:
                return Stop("Clark (Xen ADAPTIVE_SAVE): at the maximum rate and the round sent more than the last")
            stop = super().decide(view)
            if isinstance(stop, Stop):
                return stop
            self.sent_last_iter = view.last_round_sent
            seconds = max(view.last_round_steps, 1) * self.ctx.step_seconds
            dirtying = int(view.last_round_dirtied * self.ctx.page_size * 8 / seconds / STATS_MBIT_BPS)
            if dirtying > self.mbit_rate:
                self.mbit_rate = min(dirtying + INCREMENT_MBIT, MAX_MBIT_RATE)
        return Hold(self.rate())

    def final_rate(self) -> float:
        return self.rate()

    def describe(self) -> dict:
        return {**super().describe(), "variant": "Xen ADAPTIVE_SAVE (terminates)",
                "start_mbit": START_MBIT_RATE, "max_mbit": MAX_MBIT_RATE, "increment_mbit": INCREMENT_MBIT,
                "final_mbit": self.mbit_rate}
