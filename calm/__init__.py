"""calm: measure per-page memory dirtying of live services and replay it into live-migration cost engines."""

import _signal  # the builtin module: nothing to import before the handler is in place
import os as _os
import sys as _sys


def _launched_as_command() -> bool:
    """True when this process is the `calm` command (its console script, or `python -m calm`)."""
    if not _sys.argv:
        return False
    if _os.path.basename(_sys.argv[0]) == "calm":
        return True
    orig = getattr(_sys, "orig_argv", [])
    return _sys.argv[0] == "-m" and "-m" in orig and orig[orig.index("-m") + 1:][:1] == ["calm"]


def early_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C while the command is still starting (imports, argument parsing): one line, exit 130.

    Installed here, the first calm code that runs, because a KeyboardInterrupt raised inside an
    import would print a traceback before `calm.cli.main` could catch it. Nothing is open yet, so
    exiting at once loses nothing; `main` puts Python's handler back before the command runs."""
    words = [a for a in _sys.argv[1:] if not a.startswith("-")][:1]
    _os.write(2, f"calm{' ' + words[0] if words else ''}: interrupted\n".encode())
    _os._exit(130)


if _launched_as_command() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, early_interrupt)

from calm.core.version import __version__  # noqa: E402

__all__ = ["__version__"]
