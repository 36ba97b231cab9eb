"""Live migration through QMP: parameters, start, progress, completion, and QEMU's own dirty-rate
measurement, in QEMU's units and terms (query-migrate's `ram` fields, calc-dirty-rate).

Units at this boundary: bandwidth in bytes/s and downtime in ms, exactly as QMP takes them
(`max-bandwidth`, `downtime-limit`); times returned by QEMU stay in ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from calm.core.errors import CalmError
from calm.qemu.qmp import Monitor, QmpError

FINAL_STATES = ("completed", "failed", "cancelled")
# a migration in any of these states is under way: another cannot start
ACTIVE_STATES = ("setup", "active", "pre-switchover", "device", "postcopy-active", "cancelling", "wait-unplug")


@dataclass
class MigrationStatus:
    """query-migrate, flattened: what QEMU reports about a migration (zeros until it says)."""

    status: str
    total_time_ms: int = 0  # from start to completion (or so far)
    downtime_ms: int = 0  # the guest's pause, measured by QEMU (completed only)
    expected_downtime_ms: int = 0
    setup_time_ms: int = 0
    transferred: int = 0  # ram.transferred: bytes put on the wire, page headers included
    remaining: int = 0  # ram.remaining: dirty bytes still to send
    total: int = 0  # ram.total: guest RAM bytes
    normal: int = 0  # ram.normal: pages sent in full
    normal_bytes: int = 0
    duplicate: int = 0  # ram.duplicate: zero pages, sent as a header
    dirty_sync_count: int = 0  # ram.dirty-sync-count: bitmap syncs (1 + one per later pass)
    dirty_pages_rate: int = 0  # ram.dirty-pages-rate: pages/s seen at the last sync
    mbps: float = 0.0  # ram.mbps: QEMU's measured throughput, Mbit/s
    error: str = ""

    @classmethod
    def from_qmp(cls, info: dict[str, Any]) -> "MigrationStatus":
        ram = info.get("ram", {})
        return cls(
            status=info.get("status", "none"), total_time_ms=int(info.get("total-time", 0)),
            downtime_ms=int(info.get("downtime", 0)), expected_downtime_ms=int(info.get("expected-downtime", 0)),
            setup_time_ms=int(info.get("setup-time", 0)), transferred=int(ram.get("transferred", 0)),
            remaining=int(ram.get("remaining", 0)), total=int(ram.get("total", 0)),
            normal=int(ram.get("normal", 0)), normal_bytes=int(ram.get("normal-bytes", 0)),
            duplicate=int(ram.get("duplicate", 0)), dirty_sync_count=int(ram.get("dirty-sync-count", 0)),
            dirty_pages_rate=int(ram.get("dirty-pages-rate", 0)), mbps=float(ram.get("mbps", 0.0)),
            error=str(info.get("error-desc", "")),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def query(monitor: Monitor) -> MigrationStatus:
    return MigrationStatus.from_qmp(monitor.execute("query-migrate"))


def set_parameters(monitor: Monitor, *, max_bandwidth: int | None = None,
                   downtime_limit_ms: int | None = None) -> None:
    """migrate-set-parameters: max-bandwidth in bytes/s, downtime-limit in ms (QEMU's units)."""
    parameters: dict[str, Any] = {}
    if max_bandwidth is not None:
        if max_bandwidth <= 0:
            raise CalmError(f"max-bandwidth must be > 0 bytes/s, got {max_bandwidth}")
        parameters["max-bandwidth"] = int(max_bandwidth)
    if downtime_limit_ms is not None:
        if not 0 <= downtime_limit_ms <= 2000000:  # QEMU's own bound (MAX_MIGRATE_DOWNTIME)
            raise CalmError(f"downtime-limit must be 0..2000000 ms, got {downtime_limit_ms}")
        parameters["downtime-limit"] = int(downtime_limit_ms)
    if parameters:
        monitor.execute("migrate-set-parameters", parameters)


def listen(destination: Monitor, uri: str = "tcp:127.0.0.1:0") -> str:
    """Starts an incoming migration on a QEMU started with `-incoming defer`; returns the URI the
    source must send to (with the port the OS chose when `uri` asks for port 0)."""
    destination.execute("migrate-incoming", {"uri": uri})
    info = destination.execute("query-migrate")
    for address in info.get("socket-address", []):
        if address.get("type") in ("inet", "tcp") and "port" in address:
            return f"tcp:{address['host']}:{address['port']}"
    if uri.endswith(":0"):
        raise CalmError("the destination QEMU did not report the port it listens on")
    return uri


def start(monitor: Monitor, uri: str) -> None:
    status = query(monitor).status
    if status in ACTIVE_STATES:
        raise CalmError(f"a migration is already running on this QEMU (status {status})")
    monitor.execute("migrate", {"uri": uri})


def wait(monitor: Monitor, *, deadline_s: float, poll_s: float = 0.1,
         on_status: Callable[[MigrationStatus], None] | None = None) -> MigrationStatus:
    """Polls query-migrate until the migration ends; past `deadline_s` it is cancelled (a
    migration that does not converge runs forever) and the last status before the cancel is
    returned with status "cancelled"."""
    began = time.monotonic()
    while True:
        current = query(monitor)
        if on_status is not None:
            on_status(current)
        if current.status in FINAL_STATES:
            return current
        if time.monotonic() - began > deadline_s:
            cancel(monitor)
            current.status = "cancelled"
            return current
        time.sleep(poll_s)


def cancel(monitor: Monitor, timeout_s: float = 30.0) -> None:
    """migrate_cancel, then wait until QEMU says the migration is over (the guest runs on)."""
    monitor.execute("migrate_cancel")
    end = time.monotonic() + timeout_s
    while query(monitor).status not in FINAL_STATES:
        if time.monotonic() > end:
            raise CalmError(f"the migration did not stop within {timeout_s:g} s of migrate_cancel")
        time.sleep(0.1)


@dataclass
class DirtyRate:
    """One calc-dirty-rate result (page-sampling mode): QEMU's dirty rate over calc_time_s."""

    calc_time_s: float
    dirty_rate_mib_s: int  # QEMU's "dirty-rate", MB/s in its words (2^20 bytes, rounded down)
    sample_pages: int  # sampled pages per GiB


def calc_dirty_rate(monitor: Monitor, calc_time_s: int, *, sample_pages: int = 512,
                    poll_s: float = 0.2) -> DirtyRate:
    """Runs calc-dirty-rate in page-sampling mode for `calc_time_s` whole seconds and returns the
    measured rate. (Dirty-bitmap mode is not used: it made QEMU 7.2 die under TCG here.)"""
    if calc_time_s < 1:
        raise CalmError(f"calc-time must be a whole number of seconds >= 1, got {calc_time_s}")
    # query-dirty-rate keeps saying "measured" with the previous result until the new measurement
    # has started (late on a busy host): only a result with a new start-time is this one's
    previous = monitor.execute("query-dirty-rate").get("start-time")
    monitor.execute("calc-dirty-rate", {"calc-time": int(calc_time_s), "sample-pages": int(sample_pages),
                                        "mode": "page-sampling"})
    time.sleep(calc_time_s)
    end = time.monotonic() + calc_time_s + 60
    while True:
        info = monitor.execute("query-dirty-rate")
        if info.get("status") == "measured" and info.get("start-time") != previous:
            return DirtyRate(float(info.get("calc-time", calc_time_s)), int(info["dirty-rate"]),
                             int(info.get("sample-pages", sample_pages)))
        if time.monotonic() > end:
            raise QmpError(f"calc-dirty-rate did not finish within {calc_time_s + 60} s")
        time.sleep(poll_s)
