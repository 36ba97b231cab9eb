"""A migration scenario: the RAM to move and the total in-band bandwidth, and their page units.

Unit conversion (used everywhere in replay): the simulator counts memory in pages of the trace's
page size P bytes and time in *steps* of `step_seconds` (a trace's sampling interval, or the time
unit of a synthetic trace). A rate of R bit/s therefore moves `R / 8 / P * step_seconds` pages per
step; 1 Gbit/s with 4 KiB pages is 30,517.6 pages/s, i.e. 3,051.8 pages per 0.1 s step.
"""

from __future__ import annotations

from dataclasses import dataclass

from calm.core.errors import CalmError
from calm.replay.defaults import SLIDE_SCENARIOS  # noqa: F401 (part of this module's API)
from calm.core.units import format_rate, format_size, parse_rate, parse_size



@dataclass(frozen=True)
class Scenario:
    """RAM size in bytes and total bandwidth (service + migration) in bit/s."""

    ram_bytes: int
    bandwidth_bps: float

    @property
    def name(self) -> str:
        return f"{format_size(self.ram_bytes)}@{format_rate(self.bandwidth_bps)}"

    def n_pages(self, page_size: int) -> int:
        """RAM in pages; a RAM that is not a whole number of pages is refused."""
        if self.ram_bytes % page_size:
            raise CalmError(f"RAM {format_size(self.ram_bytes)} is not a multiple of the page size {page_size}")
        return self.ram_bytes // page_size

    def pages_per_step(self, page_size: int, step_seconds: float) -> float:
        return rate_to_pages(self.bandwidth_bps, page_size, step_seconds)


def rate_to_pages(bits_per_s: float, page_size: int, step_seconds: float) -> float:
    """bit/s -> pages per step."""
    return bits_per_s / 8.0 / page_size * step_seconds


def pages_to_rate(pages_per_step, page_size: int, step_seconds: float):
    """pages per step -> bit/s (works on numpy arrays)."""
    return pages_per_step * 8.0 * page_size / step_seconds


def check_rate(bits_per_s: float, limit_bps: float, what: str, limit_what: str) -> None:
    """Refuses a rate above the one that must carry it (a policy's option against a scenario's
    link, a minimum against a maximum): the one check every policy option goes through."""
    if bits_per_s > limit_bps * (1 + 1e-9):
        raise CalmError(f"{what} {format_rate(bits_per_s)} exceeds {limit_what} ({format_rate(limit_bps)})")


def parse_scenario(text: str) -> Scenario:
    """`1GiB@1Gbit` -> Scenario; both sides use the strict units of `calm.core.units`."""
    ram, sep, bandwidth = str(text).partition("@")
    if not sep or not ram or not bandwidth:
        raise CalmError(f"cannot parse scenario '{text}': expected RAM@BANDWIDTH, e.g. 1GiB@1Gbit")
    return Scenario(parse_size(ram, "RAM size"), parse_rate(bandwidth, "bandwidth"))
