"""Command-line conventions shared by every calm command and script.

- `OneLineErrorParser`: argparse whose usage errors are one line on stderr and exit 2, like every
  other calm error (argparse prints the whole usage block by default).
- `type=` callables for argparse (`duration`, `size`, `rate`, `probability`, `whole`, `number`):
  every command reads units the same way (`calm.core.units`) and a bad value is a usage error
  naming the option, before any work starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from calm.core import units
from calm.core.errors import CalmError


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other calm error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def typed(name: str, parse: Callable[[str], object]) -> Callable[[str], object]:
    def convert(text: str):
        try:
            return parse(text)
        except CalmError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in "invalid <name> value" messages
    return convert


def duration(*, allow_zero: bool = False) -> Callable[[str], object]:
    """Seconds from `100ms`, `5s`, `2min` or a plain number of seconds."""
    return typed("duration", lambda t: units.parse_duration(t, "duration", allow_zero))


def size(*, allow_zero: bool = False) -> Callable[[str], object]:
    """Bytes from `1GiB`, `4KiB` or a plain number of bytes."""
    return typed("size", lambda t: units.parse_size(t, "size", allow_zero))


def rate(*, allow_zero: bool = False) -> Callable[[str], object]:
    """Bits per second from `1Gbit`, `100Mbit/s` or `64MiB/s`."""
    return typed("rate", lambda t: units.parse_rate(t, "rate", allow_zero))


def number(*, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None) -> Callable[[str], object]:
    """A finite float, at least `minimum` / greater than `above` / at most `maximum`."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise CalmError(f"'{text}' is not a number") from None
        if not math.isfinite(value):
            raise CalmError(f"'{text}' is not a finite number")
        if minimum is not None and value < minimum:
            raise CalmError(f"must be at least {minimum:g} (got {text})")
        if above is not None and not value > above:
            raise CalmError(f"must be greater than {above:g} (got {text})")
        if maximum is not None and value > maximum:
            raise CalmError(f"must be at most {maximum:g} (got {text})")
        return value

    return typed("number", parse)


def probability(*, allow_one: bool = False) -> Callable[[str], object]:
    """A probability in [0, 1) (or [0, 1] with allow_one)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise CalmError(f"'{text}' is not a number") from None
        if not (0.0 <= value <= 1.0) or (value == 1.0 and not allow_one):
            raise CalmError(f"must be in [0, {'1]' if allow_one else '1)'} (got {text})")
        return value

    return typed("probability", parse)


def whole(*, minimum: int = 0, maximum: int | None = None) -> Callable[[str], object]:
    """A whole number of at least `minimum` (and at most `maximum`)."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise CalmError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise CalmError(f"must be at least {minimum} (got {value})")
        if maximum is not None and value > maximum:
            raise CalmError(f"must be at most {maximum} (got {value})")
        return value

    return typed("whole number", parse)
