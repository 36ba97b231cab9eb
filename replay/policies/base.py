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
- continuous (CALM, Fixed, QEMU): the model's "b not-clean pages a step"; the simulator re-scans
  the dirty pages (a bitmap sync) as soon as a pass ends, within the same step, or earlier when
  the pass has fewer pages left than `sync_threshold` (QEMU syncs once the bitmap holds less
  than its switch-over threshold); `at_sync_point` may then stop the migration mid-step.

Optional parts of the interface, each with a default that changes nothing:
- `Hold(rate, ...)` instead of a bare rate promises the same answer until a condition (the
  round ends, a step, a clean count, few pages left in the pass): the simulator then need not
  ask every step and may advance many steps at once in closed form (`replay.stride`).
- `order(log)` lets a policy order the pages of each pass (cold before hot, hot deferred):
  it gets the per-page dirty log so far (`PageLog`) and returns a `replay.passes.PageOrder`.
- `observe(sent, cold_sent, written)` after every step: the footprint pages the step sent and
  the ones the trace wrote in it (what dirty logging shows a real engine), so a policy can learn
  per-page write rates at a cost of O(pages sent + written) a step; `wants_sync(step)` lets a
  continuous policy ask for a bitmap sync (a new, freshly ordered pass) before a step, when the
  order of the current pass has gone stale.
- `wire`: what a page costs on the wire (QEMU: an 8-byte header per page, a zero page as a
  header only); budgets stay in pages of data per step, so `rate` keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calm.replay.cost import PagesCost
from calm.replay.passes import PageOrder


@dataclass(frozen=True)
class MigrationContext:
    """What a policy knows before the migration starts (units: pages, steps)."""

    n_pages: int  # M
    bandwidth: float  # B, total pages per step (service + migration)
    page_size: int  # bytes
    step_seconds: float  # seconds per step
    cost: PagesCost  # F(service bandwidth in pages per step)
    mean_p: float  # uniform-equivalent per-step write probability of the workload
    # per-step write probability of each page the trace writes (the rest of RAM: never), from the
    # recorded profile; None for a synthetic uniform workload (Fixed's plan, see policies.fixed)
    page_p: np.ndarray | None = None
    footprint: int | None = None  # pages the simulator keeps state for (indices of `observe`), if known

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
    pass_left: int = 0  # pages of the current pass not yet sent (QEMU: the bitmap's dirty count)
    last_step_bytes: float = 0.0  # bytes sent in the previous step (QEMU measures its bandwidth so)


@dataclass(frozen=True)
class Stop:
    """Move to stop-and-copy now, for this reason (reported in the results)."""

    reason: str
    after_sync: bool = False  # the policy synced the bitmap before deciding (counted in `syncs`)


@dataclass(frozen=True)
class Hold:
    """Send at `rate` pages/step and ask again only when the round ends (round-based policies),
    at step `until_step`, once M - n_dirty >= `until_clean`, or once the pass has at most
    `until_pass_left` pages left. Equivalent to answering `rate` at every step until then."""

    rate: float
    until_step: int | None = None
    until_clean: float | None = None
    until_pass_left: float | None = None


@dataclass(frozen=True)
class WireFormat:
    """Bytes a page costs on the wire: `header_bytes` on top of every page's data, and
    `zero_page_bytes` in all for a page holding only zeros (None: sent like any other page)."""

    header_bytes: int = 0
    zero_page_bytes: int | None = None

    def describe(self) -> dict:
        return {"page_header_bytes": self.header_bytes, "zero_page_bytes": self.zero_page_bytes}


@dataclass(frozen=True)
class PageLog:
    """What a migration engine knows per page when a pass begins (arrays over the footprint).

    Caveat for policy writers: the simulator keeps state only for the footprint, the pages the
    trace *ever* writes, so `position` reveals which pages will be written. An online policy must
    treat a footprint page never written so far like the never-written (cold) RAM; only a policy
    planned from a recorded profile may use the footprint itself."""

    step: int
    n_pages: int  # M
    position: np.ndarray  # RAM page of each footprint page
    need: np.ndarray  # bool: dirty now (what the bitmap sync of this pass finds)
    writes: np.ndarray  # steps in which the page was seen written so far
    last_write: np.ndarray  # last such step, -1 if never
    cursor: int  # RAM position just after the last page sent (where QEMU's search resumes)


class Policy:
    """Base class: override `decide`; `begin` validates options against the scenario."""

    name = "policy"
    continuous = False
    skip_redirtied = False  # Xen: a round skips pages dirtied again since it began
    # QEMU: the dirty log is read only at bitmap syncs, so a page written since the last sync goes
    # again after the next one even if this pass sent it after that write (the copy-then-dirty
    # engine otherwise counts a page sent after its last write as clean)
    resend_written_since_sync = False
    check_interval_s: float | None = None  # continuous: also check the sync threshold this often within a step
    wire = WireFormat()

    def begin(self, ctx: MigrationContext) -> None:
        self.ctx = ctx

    def decide(self, view: View) -> float | Hold | Stop:
        raise NotImplementedError

    def order(self, log: PageLog) -> PageOrder | None:
        """The order of the pass that begins now (None: RAM order)."""
        return None

    def observe(self, sent: np.ndarray, cold_sent: int, written: np.ndarray) -> None:
        """After each step: footprint pages sent in it (in order), never-written RAM pages sent,
        and footprint pages the trace wrote in it (after the sending: copy-then-dirty)."""

    def wants_sync(self, step: int) -> bool:
        """Continuous policies: sync and re-order before this step (a pass otherwise lasts until
        it runs out, which in the first pass can be the whole RAM)."""
        return False

    def sync_threshold(self, last_step_bytes: float) -> float:
        """Continuous policies: sync (begin a new pass) once the pass has fewer pages left than
        this, not only when it runs out."""
        return 0.0

    def at_sync_point(self, view: View) -> Stop | None:
        """Continuous policies, when a pass runs out or falls below `sync_threshold`, also
        mid-step: Stop to move to stop-and-copy now, None to sync and go on."""
        return None

    def final_rate(self) -> float:
        """Pages per step of the stop-and-copy phase (the full bandwidth unless a policy caps it)."""
        return self.ctx.bandwidth

    def describe(self) -> dict:
        """Options as used (JSON-ready), for results.json."""
        return {}
