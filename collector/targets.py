"""Which processes to record: the given pids, a launched command, and with --children their trees.

Why psutil: it parses /proc/PID/stat robustly (process names with spaces and parentheses) and
gives creation times, which make (pid, creation time) a process identity that survives pid reuse.
The tree is re-read every sample so forked workers (Apache, PostgreSQL) are picked up as they
appear; exited ones are noticed by the recorder when reading them fails.
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


def describe(proc: psutil.Process) -> ProcessDetails:
    """What the trace records about a process; fields we may not read stay empty."""
    with proc.oneshot():
        identity = ProcessIdentity(proc.pid, proc.create_time())
        ppid = proc.ppid()
        name = proc.name()
        try:
            cmdline = proc.cmdline()
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cmdline = []
        try:
            exe = proc.exe()
        except (psutil.AccessDenied, psutil.ZombieProcess, FileNotFoundError):
            exe = ""
    return ProcessDetails(identity, ppid, name, cmdline, exe)


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

    def current(self) -> list[psutil.Process]:
        """Live processes to record now: roots plus, with --children, all their descendants."""
        found: dict[int, psutil.Process] = {}
        for root in self.roots:
            try:
                if not root.is_running():
                    continue
                found.setdefault(root.pid, root)
                if self.follow_children:
                    for child in root.children(recursive=True):
                        found.setdefault(child.pid, child)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        return [p for p in found.values() if _alive(p)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
