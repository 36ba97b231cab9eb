"""Sizes, rates and durations: strict parsing with explicit units, and one way of printing them.

Why strict: a migration cost depends linearly on RAM / bandwidth, so confusing GB with GiB or
Gbit with GByte silently changes results by 7 % or 8x. We therefore accept only spellings whose
meaning is unambiguous and refuse the rest with a message that says what to write instead:

- sizes (bytes): binary prefixes `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) or a plain number of
  bytes with an optional `B` (`4096`, `4096B`). `1GB`, `1G`, `1Gb` are refused as ambiguous.
- rates (bits per second on the wire): decimal SI prefixes as networking uses them, `kbit`,
  `Mbit`, `Gbit`, `Tbit` (10^3..10^12 bit/s), or `bit`, optionally followed by `/s`; `Mbps`
  and `Gbps` are accepted too. Byte rates must use binary prefixes with `/s` (`100MiB/s`).
  `1G`, `1Gb`, `1GB/s` are refused.
- durations: `300ms`, `1s`, `2min`, `1h` or a plain number of seconds.
Values must be finite and below `MAX_VALUE` of their unit: `1e999GiB` is a typo, not a RAM.

Printing follows the same conventions everywhere (tables, captions, the report's footer): memory
in binary units (as RAM is sold), network bandwidth in decimal bit/s (as links are sold), dirtying
rates in MB/s (10^6 bytes/s) with the Mbit/s equivalent beside them, times and costs in seconds.
"""

from __future__ import annotations

import math
import re

from calm.core.errors import CalmError

_NUMBER = r"(?P<num>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_BINARY = {"": 1, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40, "pi": 1 << 50}
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}

_SIZE_RE = re.compile(rf"^{_NUMBER}\s*(?P<prefix>[kKmMgGtTpP]i)?B?$")
_BIT_RATE_RE = re.compile(rf"^{_NUMBER}\s*(?P<prefix>[kKmMgGtT]?)(?:bit(?:/s)?|bps)$")
_BYTE_RATE_RE = re.compile(rf"^{_NUMBER}\s*(?P<prefix>[kKmMgGtT]i)?B/s$")
_DURATION_RE = re.compile(rf"^{_NUMBER}\s*(?P<unit>ms|s|min|h)?$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}

# Far beyond any real RAM (an exbibyte), link (an exabit per second) or duration (a century),
# yet small enough that every product calm forms with them stays a finite float.
MAX_SIZE = 1 << 60
MAX_RATE = 1e18
MAX_DURATION = 100 * 365.25 * 86400.0


def _checked(value: float, text: str, what: str, allow_zero: bool, limit: float) -> float:
    if not math.isfinite(value) or value > limit:
        raise CalmError(f"{what} '{text}' is out of range")
    if value < 0 or (value == 0 and not allow_zero):
        raise CalmError(f"{what} '{text}' must be {'non-negative' if allow_zero else 'positive'}")
    return value


def _unsigned(text: str, what: str) -> str:
    """The stripped text; a leading minus is refused here (the regexes match unsigned numbers)."""
    s = str(text).strip()
    if s.startswith("-"):
        raise CalmError(f"{what} '{text}' must be positive")
    return s


def parse_size(text: str, what: str = "size", allow_zero: bool = False) -> int:
    """Bytes from `1GiB`, `512MiB`, `4KiB`, `4096` or `4096B`."""
    s = _unsigned(text, what)
    m = _SIZE_RE.match(s)
    if not m:
        if re.match(rf"^{_NUMBER}\s*[kKmMgGtTpP](?:B|b|bit)?$", s):
            raise CalmError(
                f"ambiguous {what} '{text}': write binary units such as 1GiB or 512MiB "
                f"(2^30 / 2^20 bytes), or a plain number of bytes"
            )
        raise CalmError(f"cannot parse {what} '{text}': expected e.g. 1GiB, 512MiB, 4KiB or 4096")
    value = _checked(float(m["num"]) * _BINARY[(m["prefix"] or "").lower()], text, what, allow_zero, MAX_SIZE)
    if value != int(value):
        raise CalmError(f"{what} '{text}' is not a whole number of bytes")
    return int(value)


def parse_rate(text: str, what: str = "bandwidth", allow_zero: bool = False) -> float:
    """Bits per second from `1Gbit`, `512Mbit/s`, `100Mbps` or `64MiB/s` (bytes, binary)."""
    s = _unsigned(text, what)
    m = _BIT_RATE_RE.match(s)
    if m:
        return _checked(float(m["num"]) * _DECIMAL[m["prefix"].lower()], text, what, allow_zero, MAX_RATE)
    m = _BYTE_RATE_RE.match(s)
    if m:
        value = float(m["num"]) * _BINARY[(m["prefix"] or "").lower()] * 8
        return _checked(value, text, what, allow_zero, MAX_RATE)
    if re.match(rf"^{_NUMBER}\s*[kKmMgGtT]?(?:b|B|bit|Bit)?(?:/s|ps)?$", s):
        raise CalmError(
            f"ambiguous {what} '{text}': write bits per second such as 1Gbit or 512Mbit "
            f"(10^9 / 10^6 bit/s), or bytes per second such as 64MiB/s"
        )
    raise CalmError(f"cannot parse {what} '{text}': expected e.g. 1Gbit, 256Mbit or 64MiB/s")


def parse_duration(text: str, what: str = "duration", allow_zero: bool = False) -> float:
    """Seconds from `300ms`, `1s`, `2min`, `1h` or a plain number of seconds."""
    s = _unsigned(text, what)
    m = _DURATION_RE.match(s)
    if not m:
        raise CalmError(f"cannot parse {what} '{text}': expected e.g. 300ms, 1s or 0.5")
    return _checked(float(m["num"]) * _DURATION_UNITS[m["unit"]], text, what, allow_zero, MAX_DURATION)


# -- printing --------------------------------------------------------------------------------------
_SIZE_PREFIXES = (("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))
_RATE_PREFIXES = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def _format(value: float, prefixes: tuple[tuple[str, float], ...], unit: str, sep: str) -> str:
    for prefix, scale in prefixes:
        if value >= scale:
            return f"{value / scale:g}{sep}{prefix}{unit}"
    return f"{value:g}{sep}{unit}"


def format_size(n_bytes: float, sep: str = "") -> str:
    """Binary spelling that parse_size reads back: 1073741824 -> '1GiB' ('1 GiB' with sep=' ')."""
    return _format(n_bytes, _SIZE_PREFIXES, "B", sep)


def format_rate(bits_per_s: float, sep: str = "") -> str:
    """Decimal spelling that parse_rate reads back: 1e9 -> '1Gbit' ('1 Gbit' with sep=' ')."""
    return _format(bits_per_s, _RATE_PREFIXES, "bit", sep)


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
    return f"{x:,.{decimals}f}"


def seconds(x: float | None) -> str:
    return "–" if x is None else f"{sig(x)} s"


def mib(n_bytes: float) -> str:
    return f"{sig(n_bytes / (1 << 20))} MiB"


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
