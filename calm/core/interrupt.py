"""Ctrl-C between a command's start-up and its own stop handler, remembered where it cannot be raised.

`calm.cli.main` installs `raise_interrupt` as the SIGINT handler once start-up is over. Python
runs a handler at the next bytecode, and a KeyboardInterrupt raised inside a callback of a C
extension (h5py or numpy importing a module from C) is reported as "unraisable" and dropped: the
command went on as if no Ctrl-C had come (a CI run saw `calm record` print that traceback, then
record its target for the full 5 s and exit 0). So the handler also remembers that it ran, and
a command that installs its own stop handler (the recorder's waiter, the migration steering)
takes a remembered Ctrl-C over as if it had arrived a moment later. `install` also keeps the
dropped exception's traceback off stderr: the interrupt is not lost, so it is not an error.
"""

from __future__ import annotations

import signal
import sys

_received = False


def raise_interrupt(signum: int, frame: object) -> None:
    """Python's own SIGINT behaviour, remembering that it ran."""
    global _received
    _received = True
    raise KeyboardInterrupt


def _quiet_about_interrupts(unraisable: "sys.UnraisableHookArgs") -> None:
    if unraisable.exc_type is KeyboardInterrupt and _received:
        return  # remembered: `pending_signal` hands it to the command's own handler
    sys.__unraisablehook__(unraisable)


def install() -> None:
    """The command's SIGINT handler from here on, and the quiet hook for interrupts it drops."""
    signal.signal(signal.SIGINT, raise_interrupt)
    sys.unraisablehook = _quiet_about_interrupts


def was_interrupted() -> bool:
    """True once `raise_interrupt` has run in this process (even if its exception was lost)."""
    return _received


def pending_signal() -> int | None:
    """SIGINT if a Ctrl-C came before the caller's own handler was in place, else None."""
    return signal.SIGINT if _received else None
