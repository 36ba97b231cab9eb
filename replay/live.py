"""Replay policies driving a live QEMU migration (`calm migrate`): QEMU's figures as a policy's View.

The simulator shows a policy a `View` computed from a page-exact dirty log; a live migration has
only what `query-migrate` reports. `LiveController` translates, each control step:
- n_pages M = ram.total / page; pages sent = ram.normal + ram.duplicate;
- a round (Clark) or pass is the span between two dirty-bitmap syncs (ram.dirty-sync-count);
  the pages its sync found dirty are ram.remaining at the first step after the sync;
- the write probability p per step of a clean page: QEMU's ram.dirty-pages-rate (pages newly
  dirtied since the previous rate period, per second; QEMU updates it at syncs at least 1 s
  apart) x step / the clean pages then (M - remaining). Before QEMU has measured it (the first
  pass) p is the prior: the profile's mean write probability (`--profile`) or QEMU's own
  calc-dirty-rate measured just before the migration. CALM's estimator needs a per-page log, which
  QEMU does not expose, so CALM runs with this p (its `p` option) for both p_clean and p_sent;
- the pages not clean at the destination: ram.remaining (dirty at the last sync, not yet resent)
  plus the clean pages expected to be written since that sync at probability p per step.
Rates come back in pages of data per step and go to QEMU as bytes/s with its 8-byte page header.

Policies: calm (the online rule; stop by its cost rule), clark (Clark's rounds), fixed (the
uniform model's optimal rate and stop, planned from the prior p), and qemu (no steering: QEMU's
max-bandwidth and downtime-limit, and QEMU's own switch-over; the "fixed rate" baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from calm.core.errors import CalmError
from calm.replay.cost import CostFunction, in_pages
from calm.replay.policies import Calm, Clark, Fixed
from calm.replay.policies.base import Hold, MigrationContext, Policy, Stop, View
from calm.replay.policies.qemu import PAGE_HEADER_BYTES

PAGE_SIZE = 4096  # x86 TARGET_PAGE_SIZE: QEMU's ram.* page counts are in these
HOLD_DOWNTIME_LIMIT_MS = 1  # a steered migration's downtime-limit until the policy stops
LIVE_POLICIES = ("calm", "clark", "fixed", "qemu")
_P_MAX = 0.999


@dataclass(frozen=True)
class Decision:
    rate_bytes_s: float | None  # max-bandwidth to set (None: leave it)
    switchover: bool = False
    reason: str = ""


class LiveController:
    """One policy steering one live migration (see the module docstring)."""

    steered = True

    def __init__(self, policy: Policy, *, link_bps: float, cost: CostFunction, step_s: float, prior_p: float,
                 downtime_limit_ms: int = HOLD_DOWNTIME_LIMIT_MS) -> None:
        if not 0.0 <= prior_p < 1.0:
            raise CalmError(f"the prior write probability must be in [0, 1), got {prior_p}")
        self.policy, self.link_bps, self.cost, self.step_s = policy, float(link_bps), cost, float(step_s)
        self.prior_p = self.p = float(prior_p)
        self.downtime_limit_ms = downtime_limit_ms
        self.p_source = "prior"

    def bytes_per_s(self, pages_per_step: float) -> float:
        return pages_per_step * (PAGE_SIZE + PAGE_HEADER_BYTES) / self.step_s

    def begin(self, ram_bytes: int) -> Decision:
        self.n_pages = max(1, ram_bytes // PAGE_SIZE)
        bandwidth = self.link_bps / 8.0 / PAGE_SIZE * self.step_s
        ctx = MigrationContext(self.n_pages, bandwidth, PAGE_SIZE, self.step_s,
                               in_pages(self.cost, PAGE_SIZE, self.step_s), self.prior_p)
        self.policy.begin(ctx)
        self._syncs, self._sync_step, self._round_steps, self._round_dirtied = 1, 0, 0, self.n_pages
        self._round_done = False
        self._steps = 0
        return self._answer(self._view(self.n_pages, self.n_pages, 0, 0, 0.0), "start")

    def step(self, t_s: float, status) -> Decision:
        self._steps += 1
        remaining = status.remaining // PAGE_SIZE
        if status.dirty_sync_count > self._syncs:  # a new pass began since the last step
            self._round_steps = self._steps - self._sync_step
            self._sync_step, self._syncs = self._steps, status.dirty_sync_count
            self._round_dirtied = remaining
            self._round_done = True
        clean = max(self.n_pages - remaining, 1)
        if status.dirty_pages_rate > 0:
            self.p = min(status.dirty_pages_rate * self.step_s / clean, _P_MAX)
            self.p_source = "QEMU dirty-pages-rate"
        since_sync = self._steps - self._sync_step
        expected = (self.n_pages - remaining) * (1.0 - (1.0 - self.p) ** since_sync)
        n_dirty = min(self.n_pages, round(remaining + expected))
        sent = status.normal + status.duplicate
        view = self._view(n_dirty, remaining, sent, self._steps, status.transferred)
        self._round_done = False
        return self._answer(view, "")

    def _view(self, n_dirty: int, pass_left: int, sent: int, step: int, transferred: float) -> View:
        return View(step=step, n_dirty=n_dirty, rounds=self._syncs, round_done=self._round_done,
                    last_round_sent=0, last_round_skipped=0, last_round_steps=max(self._round_steps, 1),
                    last_round_dirtied=self._round_dirtied, total_sent=sent, written_pages=0,
                    clean_exposure=0, clean_dirtied=0, pass_left=pass_left)

    def _answer(self, view: View, reason: str) -> Decision:
        if isinstance(self.policy, Calm):
            self.policy.p = self.p  # CALM's own estimator needs a page log; QEMU gives this rate
        answer = self.policy.decide(view)
        if isinstance(answer, Stop):
            return Decision(None, True, answer.reason)
        rate = answer.rate if isinstance(answer, Hold) else float(answer)
        rate = min(max(rate, 1.0), self.policy.ctx.bandwidth)
        return Decision(self.bytes_per_s(rate), False,
                        reason or f"{self.policy.name}: p={self.p:.3g}/step ({self.p_source}), "
                                  f"{view.n_dirty} pages not clean")

    def describe(self) -> dict:
        return {"policy": self.policy.name, "steered": True, "step_s": self.step_s, "link_bps": self.link_bps,
                "prior_p_per_step": self.prior_p, "last_p_per_step": self.p, "p_source": self.p_source,
                "hold_downtime_limit_ms": self.downtime_limit_ms, "options": self.policy.describe()}


class QemuDefault:
    """No steering: QEMU's max-bandwidth and downtime-limit (given, or the source's current ones),
    QEMU's own switch-over. With a max-bandwidth this is the fixed-rate baseline."""

    steered = False

    def __init__(self, max_bandwidth_bytes_s: float | None, downtime_limit_ms: int | None,
                 current: dict) -> None:
        self.rate = float(current["max-bandwidth"] if max_bandwidth_bytes_s is None else max_bandwidth_bytes_s)
        self.downtime_limit_ms = int(current["downtime-limit"] if downtime_limit_ms is None else downtime_limit_ms)

    def begin(self, ram_bytes: int) -> Decision:
        return Decision(self.rate, False, "qemu: max-bandwidth held, QEMU switches over itself")

    def step(self, t_s: float, status) -> Decision:
        return Decision(self.rate)

    def describe(self) -> dict:
        return {"policy": "qemu", "steered": False, "max_bandwidth_bytes_s": self.rate,
                "downtime_limit_ms": self.downtime_limit_ms}


def make_controller(name: str, *, link_bps: float, cost: CostFunction, step_s: float, prior_p: float,
                    current: dict, rate_bytes_s: float | None = None, downtime_limit_ms: int | None = None,
                    clark_min_bps: float | None = None, clark_increment_bps: float | None = None):
    if name == "qemu":
        return QemuDefault(rate_bytes_s, downtime_limit_ms, current)
    policies = {"calm": lambda: Calm(p=prior_p), "fixed": Fixed,
                "clark": lambda: Clark(clark_min_bps, None, clark_increment_bps)}
    if name not in policies:
        raise CalmError(f"unknown policy '{name}': choose from {', '.join(LIVE_POLICIES)}")
    return LiveController(policies[name](), link_bps=link_bps, cost=cost, step_s=step_s, prior_p=prior_p)


def p_from_dirty_rate(mib_per_s: float, ram_bytes: int, step_s: float) -> float:
    """calc-dirty-rate's MiB/s -> the uniform-equivalent write probability of a page per step."""
    pages_per_s = mib_per_s * (1 << 20) / PAGE_SIZE
    return min(pages_per_s * step_s / max(ram_bytes // PAGE_SIZE, 1), _P_MAX)


def modelled_cost(samples: list[dict], downtime_s: float, link_bps: float, cost: CostFunction) -> float:
    """The cost model applied to the real run: sum over the pre-copy steps of F(link - measured
    migration throughput) x step length, plus the downtime (seconds of violated SLA, as `calm
    replay` counts them), from `Sample` dicts (calm.qemu.steer)."""
    total, last_t, last_bytes = 0.0, 0.0, 0
    for s in samples:
        if s["status"] != "active":  # from here on the final copy: counted as the downtime
            break
        dt = s["t_s"] - last_t
        if dt <= 0:
            continue
        used = max(0.0, (s["transferred"] - last_bytes) * 8.0 / dt)
        total += float(cost(max(link_bps - used, 0.0))) * dt
        last_t, last_bytes = s["t_s"], s["transferred"]
    return total + downtime_s if math.isfinite(downtime_s) else math.inf
