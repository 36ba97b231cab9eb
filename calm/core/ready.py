"""The "ready" handshake of calm's long-running programs (`calm record --ready-file`, the ground-truth
workload's `--ready-file`): a file that appears, complete, once the program is doing its job, so a
script or a test waits for it instead of sleeping for a guessed time.

It works like a daemon's pid file: it holds the program's pid, so `kill -INT $(cat FILE)` stops it.
It is written under a temporary name and renamed into place, so a reader never sees it half
written; it is private (0600) and never written through a symlink (the rename replaces a symlink
instead of following it). A stale file left by an earlier run is removed when the program starts,
so it cannot signal too early. `wait_for` is the other side: what a script waiting on a program's
ready file calls.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from calm.core.errors import CalmError


def check_ready_file(path: Path) -> None:
    """Refuses a ready file that could not be written, before any work starts."""
    if path.is_dir():
        raise CalmError(f"ready file {path} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CalmError(f"directory of the ready file {path} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CalmError(f"directory of the ready file {path} is not writable")


def remove_stale(path: Path) -> None:
    """Removes a ready file of an earlier run (a symlink itself, not its target)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CalmError(f"cannot remove the old ready file {path}: {exc.strerror}") from None


def announce(path: Path) -> None:
    """Makes `path` appear, holding our pid and a newline, in one atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise CalmError(f"cannot write the ready file {path}: {exc.strerror}") from None


class NotReady(Exception):
    """The program exited, or ran out of time, before its ready file appeared."""

    def __init__(self, message: str, exit_status: int | None) -> None:
        super().__init__(message)
        self.exit_status = exit_status  # None when it was still running at the deadline


def wait_for(path: Path, proc: subprocess.Popen, what: str, timeout: float | None = None) -> None:
    """Waits for `proc`'s ready file `path` (see `announce`) instead of sleeping a guessed time.

    Polls the file and the process alike, so a program that fails to start is reported at once
    rather than at the deadline. Raises NotReady "WHAT exited with status N before it was ready" or
    "WHAT was not ready within T s"; the caller adds what it knows (the program's stderr, a log).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            if path.exists():  # it got ready, then exited, between our two looks
                return
            raise NotReady(f"{what} exited with status {proc.returncode} before it was ready", proc.returncode)
        if deadline is not None and time.monotonic() > deadline:
            raise NotReady(f"{what} was not ready within {timeout:g} s", None)
        time.sleep(0.02)
