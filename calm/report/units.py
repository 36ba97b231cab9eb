"""Number formatting for the HTML report, so every table and caption uses the same units.

Why one module: the report mixes the analyzer's figures (pages, MB/s of dirtying) and the
replay's (bit/s of bandwidth, seconds of violated SLA). The conventions, stated in the report's
footer too, are: memory in binary units (KiB, MiB, GiB = 2^10, 2^20, 2^30 bytes, as RAM is sold),
network bandwidth in decimal bit/s (Mbit/s = 10^6 bit/s, as links are sold), dirtying rates in
MB/s (10^6 bytes/s, as the analyzer's plots) with the same rate in Mbit/s beside it so it can be
compared with a link, and every time and cost in seconds.
"""

from __future__ import annotations

import math

MIB = 1 << 20


def sig(x: float | None, digits: int = 3) -> str:
    """`digits` significant figures, positional for everyday magnitudes, never '1e-05' noise."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 6 or magnitude < -4:
        return f"{x:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    text = f"{x:,.{decimals}f}"
    return text


def seconds(x: float | None) -> str:
    return "–" if x is None else f"{sig(x)} s"


def mib(n_bytes: float) -> str:
    return f"{sig(n_bytes / MIB)} MiB"


def pages(n: int, page_size: int) -> str:
    """'1,234 pages (4.8 MiB)'."""
    return f"{n:,} pages ({mib(n * page_size)})"


def mbit_s(bits_per_s: float) -> str:
    return f"{sig(bits_per_s / 1e6)} Mbit/s"


def mb_s(bytes_per_s: float) -> str:
    """A dirtying rate, with its Mbit/s equivalent for comparison with a link."""
    return f"{sig(bytes_per_s / 1e6)} MB/s ({sig(bytes_per_s * 8 / 1e6)} Mbit/s)"


def probability(p: float) -> str:
    return f"{p:.3f}"


def format_ram(n_bytes: int) -> str:
    """'1 GiB', '512 MiB', '1.5 GiB'."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.4g} {unit}"
    return f"{n_bytes} B"


def format_link(bits_per_s: float) -> str:
    """A link's total bandwidth: '1 Gbit/s', '256 Mbit/s'."""
    for unit, size in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_s >= size:
            return f"{bits_per_s / size:.4g} {unit}"
    return f"{bits_per_s:.4g} bit/s"
