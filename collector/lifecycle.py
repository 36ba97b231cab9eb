"""The life of a recording outside its rounds: stop signals, target exits and a launched command.

Why these pieces:
- `Waiter` sleeps until the next round, but wakes at once for SIGINT/SIGTERM (a self-pipe fed by
  `signal.set_wakeup_fd`) and when a followed process exits (a pidfd per process, Linux >= 5.3:
  it becomes readable when the process dies). Without pidfds, an exit was only seen by the next
  round: `--interval 1000` kept calm waiting for a process long gone. On a kernel without pidfds
  the exits are seen by the rounds, as before.
- `launch` starts the command to record with PR_SET_PDEATHSIG, so the kernel sends it SIGTERM (what
  calm's own stop sends) if calm dies without stopping it, SIGKILL included; nothing else could.
  It reaches the launched process itself: start a shell's last command with `exec`.
- `ExecImage` tells an exec from a map change: after exec a process has a new program (exe) and a
  new address space, whose code and stack start elsewhere (/proc/PID/stat fields 26 and 28).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass

from calm.collector.targets import why_no_memory
from calm.core.errors import CalmError
from calm.core.interrupt import pending_signal

PR_SET_PDEATHSIG = 1


class Waiter:
    """SIGINT/SIGTERM set a flag; sleeps end early for them and for exits of watched processes."""

    def __init__(self) -> None:
        self.received: int | None = pending_signal()  # a Ctrl-C that start-up could not raise
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_wakeup = signal.set_wakeup_fd(self._write_fd)
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        self._poll = select.poll()
        self._poll.register(self._read_fd, select.POLLIN)
        self._pidfds: dict[int, object] = {}  # fd -> the key given to watch()

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def watch(self, pid: int, key: object) -> bool:
        """Wakes `sleep_until` when `pid` exits; False if pidfds are not available."""
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return False  # no pidfd_open (kernel < 5.3), or the process is already gone
        self._pidfds[fd] = key
        self._poll.register(fd, select.POLLIN)
        return True

    def sleep_until(self, deadline: float) -> list[object]:
        """Sleeps until `deadline` (monotonic), a stop signal, or exits; returns the keys of the
        watched processes that exited (each is reported once)."""
        exited: list[object] = []
        while self.received is None and not exited:
            delay = deadline - time.monotonic()
            if delay <= 0:
                break
            for fd, _ in self._poll.poll(min(60_000, max(1, int(delay * 1000 + 0.999)))):
                if fd == self._read_fd:
                    try:
                        os.read(self._read_fd, 64)
                    except BlockingIOError:
                        pass
                elif fd in self._pidfds:
                    exited.append(self._pidfds.pop(fd))
                    self._poll.unregister(fd)
                    os.close(fd)
        return exited

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        for fd in [self._read_fd, self._write_fd, *self._pidfds]:
            os.close(fd)
        self._pidfds.clear()


def _pdeathsig_hook():
    """A preexec_fn: the child gets SIGTERM when calm dies (and at once if calm already died)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
    parent = os.getpid()

    def die_with_calm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # calm died between the fork and the prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_calm


def launch(command: list[str]) -> subprocess.Popen:
    """Starts the command to record (see module doc); one clear error if it cannot start."""
    try:
        return subprocess.Popen(command, preexec_fn=_pdeathsig_hook())
    except FileNotFoundError:
        raise CalmError(f"command not found: {command[0]}") from None
    except PermissionError:
        raise CalmError(f"command not executable: {command[0]}") from None


def command_ended_early(popen: subprocess.Popen, name: str) -> CalmError:
    """The launched command ended before its first sample: one line, and calm exits with the
    command's own status as `perf record` does (as a shell reports it, 128 + N for signal N; 1
    if it was 0, since nothing was recorded)."""
    try:
        code = popen.wait(timeout=5)
    except subprocess.TimeoutExpired:  # alive, but its memory is already gone (exiting)
        return CalmError(f"command {name} {why_no_memory(popen.pid)}")
    status = code if code >= 0 else 128 - code
    error = CalmError(f"command {name} exited with status {status} before recording started (nothing recorded)")
    error.exit_code = status or 1
    return error


@dataclass(frozen=True)
class ExecImage:
    """What changes when a process execs (see module doc)."""

    exe: str
    start_code: int
    start_stack: int

    @classmethod
    def read(cls, pid: int) -> ExecImage | None:
        """The image of a live process, None if it is gone or unreadable."""
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        # fields[0] is field 3 (state); start_code is field 26, start_stack field 28
        try:
            return cls(exe, int(fields[23]), int(fields[25]))
        except (IndexError, ValueError):
            return None
