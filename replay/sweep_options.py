"""The policy options that `calm sweep` accepts as lists, in one table (imports nothing heavy:
the CLI builds its parser from it before numpy loads).

Each entry is a `calm replay` option of one policy; in a sweep it takes comma-separated values
(`--qemu-max-bandwidth 50Mbit,100Mbit`) and the policy runs once per value (once per combination
when several of its options are lists). `field` is the `PolicyOptions` attribute it sets and the
column of the sweep table that records it (empty where the policy's default applied).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from calm.core import argtypes
from calm.core.units import format_rate


@dataclass(frozen=True)
class SweepOption:
    flag: str
    field: str
    algorithm: str
    metavar: str
    help: str
    argtype: Callable[[str], object]
    show: Callable[[object], str]


def _seconds(value) -> str:
    return f"{value:g}s"


SWEEP_OPTIONS: tuple[SweepOption, ...] = (
    SweepOption("--clark-min", "clark_min_bps", "clark", "RATES",
                "Clark: first round's (minimum) rate (default 100Mbit, at most half the bandwidth)",
                argtypes.rate(), format_rate),
    SweepOption("--clark-max", "clark_max_bps", "clark", "RATES",
                "Clark: maximum rate (default: the scenario's bandwidth)", argtypes.rate(), format_rate),
    SweepOption("--clark-increment", "clark_increment_bps", "clark", "RATES",
                "Clark: rate increment per round (default 50Mbit, at most a quarter of the bandwidth)",
                argtypes.rate(allow_zero=True), format_rate),
    SweepOption("--clark-max-rounds", "clark_max_rounds", "clark", "COUNTS",
                "Clark: also stop after N rounds (default: no cap)", argtypes.whole(minimum=1), str),
    SweepOption("--qemu-max-bandwidth", "qemu_max_bandwidth_bps", "qemu", "RATES",
                "QEMU: max-bandwidth (default QEMU's 128MiB/s, capped by the link)", argtypes.rate(), format_rate),
    SweepOption("--qemu-downtime-limit", "qemu_downtime_limit_s", "qemu", "DURATIONS",
                "QEMU: downtime-limit (default 300ms)", argtypes.duration(), _seconds),
    SweepOption("--qemu-switchover-bandwidth", "qemu_switchover_bandwidth_bps", "qemu", "RATES",
                "QEMU: avail-switchover-bandwidth (default: the bandwidth QEMU measures)", argtypes.rate(),
                format_rate),
)
