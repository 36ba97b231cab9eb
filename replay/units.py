"""Parsing of sizes, rates and durations with explicit units.

Why strict: a migration cost depends linearly on RAM / bandwidth, so confusing GB with GiB or
Gbit with GByte silently changes results by 7 % or 8x. We therefore accept only spellings whose
meaning is unambiguous and refuse the rest with a message that says what to write instead:

- sizes (bytes): binary prefixes `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024) or a plain number of
  bytes with an optional `B` (`4096`, `4096B`). `1GB`, `1G`, `1Gb` are refused as ambiguous.
- rates (bits per second on the wire): decimal SI prefixes as networking uses them, `kbit`,
  `Mbit`, `Gbit`, `Tbit` (10^3..10^12 bit/s), or `bit`, optionally followed by `/s`; `Mbps`
  and `Gbps` are accepted too. Byte rates must use binary prefixes with `/s` (`100MiB/s`).
  `1G`, `1Gb`, `1GB/s` are refused.
- durations: `300ms`, `1s`, `2min` or a plain number of seconds.
"""

from __future__ import annotations

import re

from calm.errors import CalmError

_NUMBER = r"(?P<num>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_BINARY = {"": 1, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}

_SIZE_RE = re.compile(rf"^{_NUMBER}\s*(?P<prefix>[kKmMgGtT]i)?B?$")
_BIT_RATE_RE = re.compile(rf"^{_NUMBER}\s*(?P<prefix>[kKmMgGtT]?)(?:bit(?:/s)?|bps)$")
_BYTE_RATE_RE = re.compile(rf"^{_NUMBER}\s*(?P<prefix>[kKmMgGtT]i)?B/s$")
_DURATION_RE = re.compile(rf"^{_NUMBER}\s*(?P<unit>ms|s|min|h)?$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}


def _positive(value: float, text: str, what: str, allow_zero: bool) -> float:
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
        if re.match(rf"^{_NUMBER}\s*[kKmMgGtT](?:B|b|bit)?$", s):
            raise CalmError(
                f"ambiguous {what} '{text}': write binary units such as 1GiB or 512MiB "
                f"(2^30 / 2^20 bytes), or a plain number of bytes"
            )
        raise CalmError(f"cannot parse {what} '{text}': expected e.g. 1GiB, 512MiB, 4KiB or 4096")
    value = float(m["num"]) * _BINARY[(m["prefix"] or "").lower()]
    if value != int(value):
        raise CalmError(f"{what} '{text}' is not a whole number of bytes")
    return int(_positive(value, text, what, allow_zero))


def parse_rate(text: str, what: str = "bandwidth", allow_zero: bool = False) -> float:
    """Bits per second from `1Gbit`, `512Mbit/s`, `100Mbps` or `64MiB/s` (bytes, binary)."""
    s = _unsigned(text, what)
    m = _BIT_RATE_RE.match(s)
    if m:
        value = float(m["num"]) * _DECIMAL[m["prefix"].lower()]
        return _positive(value, text, what, allow_zero)
    m = _BYTE_RATE_RE.match(s)
    if m:
        value = float(m["num"]) * _BINARY[(m["prefix"] or "").lower()] * 8
        return _positive(value, text, what, allow_zero)
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
    return _positive(float(m["num"]) * _DURATION_UNITS[m["unit"]], text, what, allow_zero)


def _format(value: float, prefixes: tuple[str, ...], scales: dict[str, int], unit: str) -> str:
    for prefix in prefixes:
        scale = scales[prefix.lower()]
        if value >= scale:
            return f"{value / scale:g}{prefix}{unit}"
    return f"{value:g}{unit}"


def format_size(n_bytes: float) -> str:
    """Shortest exact binary spelling: 1073741824 -> '1GiB', 1536 -> '1.5KiB'."""
    return _format(n_bytes, ("Ti", "Gi", "Mi", "Ki"), _BINARY, "B")


def format_rate(bits_per_s: float) -> str:
    """Decimal spelling: 1e9 -> '1Gbit', 2.56e8 -> '256Mbit'."""
    return _format(bits_per_s, ("T", "G", "M", "k"), _DECIMAL, "bit")
