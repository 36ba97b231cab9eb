"""Which processes to record: the given pids, a launched command, and with --children their trees.

Why psutil: it parses /proc/PID/stat robustly (process names with spaces and parentheses) and
gives creation times, which make (pid, creation time) a process identity that survives pid reuse.
The tree is re-read every sample so forked workers (Apache, PostgreSQL) are picked up as they
appear; exited ones are noticed by the recorder when reading them fails. A descendant stays a target
when its parent exits and it is reparented (to init or a subreaper): it is still part of the
service, so the tree is walked from every process found before, not only from the roots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from calm.core.errors import CalmError


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as (pid, creation time): a reused pid is a different process."""

    pid: int
    create_time: float


@dataclass(frozen=True)
class ProcessDetails:
    identity: ProcessIdentity
    ppid: int
    name: str
    cmdline: list[str]
    exe: str


def describe(proc: psutil.Process, *, cmdline: bool = True) -> ProcessDetails:
    """What the trace records about a process; fields we may not read stay empty, and so does the
    argument vector without `cmdline` (--no-cmdline)."""
    with proc.oneshot():
        identity = ProcessIdentity(proc.pid, proc.create_time())
        ppid = proc.ppid()
        name = proc.name()
        try:
            argv = proc.cmdline() if cmdline else []
        except (psutil.AccessDenied, psutil.ZombieProcess):
            argv = []
        try:
            exe = proc.exe()
        except (psutil.AccessDenied, psutil.ZombieProcess, FileNotFoundError):
            exe = ""
    return ProcessDetails(identity, ppid, name, argv, exe)


def check_pid(pid: int) -> psutil.Process:
    """The process for a --pid, or a clear refusal."""
    if pid <= 0:
        raise CalmError(f"invalid pid {pid}")
    if pid == os.getpid():
        raise CalmError("calm cannot record itself")
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise CalmError(f"pid {pid} has exited (zombie)")
        return proc
    except psutil.NoSuchProcess:
        raise CalmError(f"no process with pid {pid}") from None
    except psutil.AccessDenied:
        raise CalmError(f"no permission to inspect pid {pid}") from None


class TargetSet:
    """The root processes, and whether their descendants are followed."""

    def __init__(self, roots: list[psutil.Process], follow_children: bool) -> None:
        self.roots = roots
        self.follow_children = follow_children
        self._found: list[psutil.Process] = []  # what the last call returned

    def current(self) -> list[psutil.Process]:
        """Live processes to record now: roots plus, with --children, all their descendants and
        every process found before that still runs (reparented ones included)."""
        found: dict[int, psutil.Process] = {}
        for start in self.roots + (self._found if self.follow_children else []):
            # is_running is also False for a reused pid (psutil compares the start time)
            if start.pid not in found and _running(start):
                found[start.pid] = start
        if self.follow_children:  # one pass over /proc per round, however many processes
            by_parent: dict[int, list[psutil.Process]] = {}
            for proc in psutil.process_iter(["ppid"]):
                by_parent.setdefault(proc.info["ppid"], []).append(proc)
            queue = list(found)
            while queue:
                for child in by_parent.get(queue.pop(), ()):
                    if child.pid not in found:
                        found[child.pid] = child
                        queue.append(child.pid)
        self._found = [p for p in found.values() if _alive(p)]
        return self._found


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running()
    except psutil.Error:
        return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
