"""The one small interface between the migration simulator and a migration policy.

At every step boundary the simulator shows the policy a `View` (what a real migration engine can
observe through dirty logging: counts, never the future) and the policy answers with a rate in
pages per step or `Stop(reason)`. The simulator owns all page bookkeeping; a policy only decides
how fast to send and when to move to stop-and-copy.

Two kinds of policy:
- round-based (`continuous = False`: Clark, Xen, QEMU): a round sends the pages that were dirty
  when it began (one dirty-bitmap sync per round). When its list runs out inside a step, the rest
  of that step is idle (the trace cannot say which pages were written in part of a step) and the
  policy sees `round_done` at the next boundary, where it stops or starts the next round.
- continuous (CALM, Fixed): the model's "b not-clean pages a step"; the simulator re-scans the
  dirty pages as soon as a pass ends, within the same step.
"""

from __future__ import annotations

from dataclasses import dataclass

from calm.replay.cost import PagesCost


@dataclass(frozen=True)
class MigrationContext:
    """What a policy knows before the migration starts (units: pages, steps)."""

    n_pages: int  # M
    bandwidth: float  # B, total pages per step (service + migration)
    page_size: int  # bytes
    step_seconds: float  # seconds per step
    cost: PagesCost  # F(service bandwidth in pages per step)
    mean_p: float  # uniform-equivalent per-step write probability of the workload (Fixed's plan)

    def pages_per_step(self, bits_per_s: float) -> float:
        return bits_per_s / 8.0 / self.page_size * self.step_seconds


@dataclass(frozen=True)
class View:
    """The migration as seen at the start of a step."""

    step: int  # steps elapsed
    n_dirty: int  # pages not clean at the destination (M - clean)
    rounds: int  # rounds (or passes) begun so far
    round_done: bool  # round-based: the current round's pages are all sent
    last_round_sent: int  # pages sent by the round that just ended
    last_round_skipped: int  # pages it skipped (Xen: dirtied again before their turn)
    last_round_steps: int  # its length in whole steps (idle tail included)
    last_round_dirtied: int  # distinct pages written while it ran
    total_sent: int  # pages sent so far
    written_pages: int  # dirty-log entries so far (sum over steps of pages written)
    clean_exposure: int  # sum over steps of the clean pages just before that step's writes
    clean_dirtied: int  # how many of those were written (clean -> dirty transitions)
    sent_dirtied: int = 0  # of those, pages written in the very step that sent them


@dataclass(frozen=True)
class Stop:
    """Move to stop-and-copy now, for this reason (reported in the results)."""

    reason: str


class Policy:
    """Base class: override `decide`; `begin` validates options against the scenario."""

    name = "policy"
    continuous = False
    skip_redirtied = False  # Xen: a round skips pages dirtied again since it began

    def begin(self, ctx: MigrationContext) -> None:
        self.ctx = ctx

    def decide(self, view: View) -> float | Stop:
        raise NotImplementedError

    def final_rate(self) -> float:
        """Pages per step of the stop-and-copy phase (the full bandwidth unless a policy caps it)."""
        return self.ctx.bandwidth

    def describe(self) -> dict:
        """Options as used (JSON-ready), for results.json."""
        return {}
