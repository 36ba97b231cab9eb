"""Xen's xc_domain_save pre-copy (docs/model.md, section 6).

Rounds at full bandwidth (no rate limiter by default). A round sends the pages dirty when it
began, skipping those written again before their turn (they will go in the next round anyway).
After a round Xen moves to stop-and-copy when the pages it sent *plus those it skipped* number
fewer than `min_sent` (50), after `max_rounds` (29) rounds, or once more than `max_factor` (3) x
RAM has been sent: xc_domain_save's `(iter >= max_iters) || (sent_this_iter + skip_this_iter <
50) || (total_sent > p2m_size * max_factor)`. A round that skips most of a big hot set therefore
does not end the pre-copy, however few pages it sent.
"""

from __future__ import annotations

from calm.core.errors import CalmError
from calm.replay.policies.base import Hold, Policy, Stop, View


class Xen(Policy):
    name = "xen"
    label = "Xen"  # how stop reasons name the policy
    skip_redirtied = True

    def __init__(self, min_sent: int = 50, max_rounds: int = 29, max_factor: float = 3.0) -> None:
        if min_sent < 0 or max_rounds < 1 or max_factor <= 0:
            raise CalmError("Xen needs min_sent >= 0, max_rounds >= 1 and max_factor > 0")
        self.min_sent, self.max_rounds, self.max_factor = min_sent, max_rounds, max_factor

    def decide(self, view: View) -> Hold | Stop:
        if view.round_done:
            if view.last_round_sent + view.last_round_skipped < self.min_sent:
                return Stop(f"{self.label}: fewer than {self.min_sent} pages sent or skipped in the last round")
            if view.rounds >= self.max_rounds:
                return Stop(f"{self.label}: {self.max_rounds} rounds done")
            if view.total_sent > self.max_factor * self.ctx.n_pages:
                return Stop(f"{self.label}: more than {self.max_factor:g} x RAM sent")
        return Hold(self.ctx.bandwidth)  # full rate until the round ends

    def describe(self) -> dict:
        return {"min_sent": self.min_sent, "max_rounds": self.max_rounds, "max_factor": self.max_factor}
