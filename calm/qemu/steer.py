"""Steering a real QEMU migration step by step: the loop behind `calm migrate`.

The loop owns the QMP side only; what to do each step comes from a *controller* (built by
calm.replay.live from a replay policy), so the policies that run in the simulator are the ones
that drive QEMU. Each step (every `interval_s`) the loop reads `query-migrate`, hands the
controller what QEMU observes, and applies its answer:
- a rate: `migrate-set-parameters max-bandwidth` (QEMU applies it to the running migration at
  once, in bytes/s, page headers included);
- a switch-over: max-bandwidth raised to the link's rate and `downtime-limit` raised to QEMU's
  maximum, so QEMU's own convergence check (remaining dirty bytes below measured bandwidth x
  downtime-limit) passes at its next iteration, and it stops the guest, syncs and copies the rest.
  Until then a steered migration holds QEMU with a small downtime-limit, so QEMU does not switch
  over on its own (it still does if nothing at all is dirty, as it should).

Ctrl-C (SIGINT) or SIGTERM is taken at the next step boundary, never inside a QMP exchange:
`migrate_cancel`, wait until QEMU says the migration is over, and put the source's migration
parameters back, so the guest runs on at the source as before. The same happens when a QMP call
fails mid-way (QmpError goes up as one line) and when the deadline passes.

Controller protocol (duck-typed, to keep this package below the replay layer):
    controller.begin(ram_bytes) -> decision       before `migrate`
    controller.step(t_s, status) -> decision      each step, `status` a MigrationStatus
    controller.downtime_limit_ms: int              held while the migration runs
    controller.steered: bool                       False: QEMU's own switch-over (no hold)
    decision.rate_bytes_s: float | None, decision.switchover: bool, decision.reason: str
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from calm.core.errors import CalmError
from calm.core.interrupt import pending_signal
from calm.qemu import migration
from calm.qemu.qmp import Monitor, QmpError

MAX_DOWNTIME_LIMIT_MS = 2_000_000  # QEMU's MAX_MIGRATE_DOWNTIME (2000 s): "switch over now"
SLICE_S = 0.05  # how often a waiting step looks for Ctrl-C


@dataclass
class Sample:
    """One step as QEMU reported it, and what the controller answered."""

    t_s: float  # since `migrate` was issued
    status: str
    transferred: int
    remaining: int
    dirty_sync_count: int
    dirty_pages_rate: int
    mbps: float
    rate_set_bytes_s: float | None  # max-bandwidth in force after this step
    switchover: bool = False


@dataclass
class SteerResult:
    uri: str
    outcome: str  # completed | failed | cancelled (deadline) | interrupted (Ctrl-C / SIGTERM)
    final: dict  # query-migrate at the end, flattened (MigrationStatus)
    samples: list[Sample] = field(default_factory=list)
    rates: list[dict] = field(default_factory=list)  # every migrate-set-parameters, with its time
    switchover_at_s: float | None = None
    switchover_reason: str = ""
    parameters_before: dict = field(default_factory=dict)
    ram_bytes: int = 0
    started_monotonic: float = 0.0  # CLOCK_MONOTONIC at `migrate` (one clock for every process here)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Interrupts:
    """SIGINT/SIGTERM set a flag for the duration of the loop (restored afterwards)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __enter__(self) -> "_Interrupts":
        self._old = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}
        self.signal = self.signal or pending_signal()  # a Ctrl-C that start-up could not raise
        return self

    def _note(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def sleep_until(self, when: float) -> bool:
        """Sleeps until monotonic time `when`; False as soon as a signal came."""
        while self.signal is None:
            left = when - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, SLICE_S))
        return False


def parameters(monitor: Monitor) -> dict:
    """The source's max-bandwidth (bytes/s) and downtime-limit (ms) as they are now."""
    params = monitor.execute("query-migrate-parameters")
    return {"max-bandwidth": int(params["max-bandwidth"]), "downtime-limit": int(params["downtime-limit"])}


def _restore(monitor: Monitor, before: dict) -> None:
    migration.set_parameters(monitor, max_bandwidth=before["max-bandwidth"],
                             downtime_limit_ms=before["downtime-limit"])


def ram_bytes(monitor: Monitor) -> int:
    """The guest's RAM (query-memory-size-summary's base-memory), before a migration reports it."""
    return int(monitor.execute("query-memory-size-summary")["base-memory"])


def steer(monitor: Monitor, uri: str, controller, *, interval_s: float, link_bytes_s: float,
          deadline_s: float, log=None) -> SteerResult:
    """Runs one migration of the QEMU behind `monitor` to `uri` under `controller` (see module
    docstring). Raises CalmError when a migration already runs or QEMU refuses to start one, and
    when the migration fails (with QEMU's reason); returns the result otherwise."""
    current = migration.query(monitor)
    if current.status in migration.ACTIVE_STATES:
        raise CalmError(f"a migration is already running on this QEMU (status {current.status})")
    if monitor.execute("query-status").get("status") not in ("running", "paused"):
        raise CalmError("the source QEMU is not running a guest (status "
                        f"{monitor.execute('query-status').get('status')}); nothing to migrate")
    before = parameters(monitor)
    total = ram_bytes(monitor)
    result = SteerResult(uri=uri, outcome="", final={}, parameters_before=before, ram_bytes=total)
    first = controller.begin(total)
    rate = first.rate_bytes_s if first.rate_bytes_s is not None else float(before["max-bandwidth"])
    t0 = time.monotonic()

    def set_rate(value: float, t: float, why: str) -> None:
        migration.set_parameters(monitor, max_bandwidth=max(1, round(value)))
        result.rates.append({"t_s": round(t, 3), "max_bandwidth_bytes_s": max(1, round(value)), "why": why})

    with _Interrupts() as interrupts:
        migration.set_parameters(monitor, downtime_limit_ms=controller.downtime_limit_ms)
        set_rate(rate, 0.0, first.reason or "start")
        started = False
        try:
            migration.start(monitor, uri)
            started = True
            t0 = result.started_monotonic = time.monotonic()
            switched = False
            step = 0
            while True:
                step += 1
                if not interrupts.sleep_until(t0 + step * interval_s):
                    result.outcome = "interrupted"
                    break
                t = time.monotonic() - t0
                status = migration.query(monitor)
                sample = Sample(round(t, 3), status.status, status.transferred, status.remaining,
                                status.dirty_sync_count, status.dirty_pages_rate, status.mbps, rate)
                result.samples.append(sample)
                if status.status in migration.FINAL_STATES:
                    result.outcome = status.status
                    break
                if t > deadline_s:
                    result.outcome = "cancelled"
                    break
                if switched or status.status != "active":
                    continue
                decision = controller.step(t, status)
                if decision.switchover:
                    switched = True
                    result.switchover_at_s, result.switchover_reason = round(t, 3), decision.reason
                    set_rate(link_bytes_s, t, "switch-over: the final copy at the link's rate")
                    migration.set_parameters(monitor, downtime_limit_ms=MAX_DOWNTIME_LIMIT_MS)
                    rate, sample.switchover = link_bytes_s, True
                elif decision.rate_bytes_s is not None and round(decision.rate_bytes_s) != round(rate):
                    rate = decision.rate_bytes_s
                    set_rate(rate, t, decision.reason)
                sample.rate_set_bytes_s = rate
                if log is not None:
                    log(sample)
        except QmpError:
            if started:  # leave the source as it was, then report QEMU's one line
                _cancel_quietly(monitor, before)
            else:
                _restore_quietly(monitor, before)
            raise
        if not started:
            return result
        if result.outcome in ("interrupted", "cancelled"):
            migration.cancel(monitor)
            _restore(monitor, before)
        final = migration.query(monitor)
        if result.outcome == "completed" or final.status == "completed":
            result.outcome = "completed"  # a migration may complete while being cancelled
        elif final.status == "failed" or result.outcome == "failed":
            _restore_quietly(monitor, before)
            raise CalmError(f"the migration failed: {final.error or '(QEMU gave no reason)'}; "
                            "the guest runs on at the source")
        result.final = final.as_dict()
    return result


def _restore_quietly(monitor: Monitor, before: dict) -> None:
    try:
        _restore(monitor, before)
    except CalmError:
        pass


def _cancel_quietly(monitor: Monitor, before: dict) -> None:
    try:
        if migration.query(monitor).status in migration.ACTIVE_STATES:
            migration.cancel(monitor)
        _restore(monitor, before)
    except CalmError:
        pass
