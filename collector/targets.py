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
import shutil
from dataclasses import dataclass

import psutil

from calm.core.errors import CalmError


# Task flags in field 9 of /proc/PID/stat (include/linux/sched.h).
PF_EXITING = 0x00000004  # in do_exit(): memory is being or has been torn down
PF_KTHREAD = 0x00200000  # a kernel thread: never had user memory


def task_flags(pid: int) -> int | None:
    """The kernel's task flags of a process, or None once it is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The name in parentheses may itself hold spaces and parentheses: fields start after the last ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[6])
    except (IndexError, ValueError):
        return None


def is_kernel_thread(pid: int) -> bool:
    flags = task_flags(pid)
    return flags is not None and bool(flags & PF_KTHREAD)


def why_no_memory(pid: int) -> str:
    """Why a process calm could not open has no memory to record, as the end of an error message
    ("pid 12 ..."): it exited (gone, a zombie, or still tearing its memory down; such a process is
    not yet a zombie and its map is already empty), it is a kernel thread, or neither is known."""
    flags = task_flags(pid)
    if flags is None or flags & PF_EXITING:
        return "exited before recording started"
    if flags & PF_KTHREAD:
        return "is a kernel thread: it has no user memory to record"
    return "has no user memory mapped"


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
    title: str = ""


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
    raw = _raw_cmdline(proc.pid) if cmdline else b""  # --no-cmdline: no title from it either
    return ProcessDetails(identity, ppid, name, argv, invoked_exe(exe, raw), process_title(raw))


def _raw_cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def process_title(raw: bytes) -> str:
    """The role a process gives itself by rewriting its argv ("postgres: checkpointer"), or "".

    A program that sets its title (setproctitle, PostgreSQL, Redis, nginx) overwrites the argv area
    with one string and pads the rest with NULs or spaces; an untouched cmdline is several
    NUL-separated arguments (or one without spaces). The padding is trimmed.
    """
    text = raw.rstrip(b"\0 ")
    if not text or b"\0" in text.rstrip(b"\0"):
        parts = [p for p in text.split(b"\0") if p]
        if len(parts) != 1:
            return ""
        text = parts[0]
    if b" " not in text.strip():
        return ""
    return " ".join(text.decode(errors="replace").split())


def invoked_exe(exe: str, raw: bytes) -> str:
    """The program as the user ran it: /usr/bin/redis-server, not the redis-check-rdb it links to.

    /proc/PID/exe is the resolved file; argv[0] (or its first word, once a title was set) is what
    was run. When that resolves, directly or through PATH, to the same file, it is the better name.
    """
    first = raw.split(b"\0", 1)[0].split(b" ", 1)[0].decode(errors="replace")
    if not exe or not first:
        return exe
    candidate = first if "/" in first else shutil.which(first) or ""
    if candidate and candidate != exe:
        try:
            if os.path.realpath(candidate) == os.path.realpath(exe):
                return os.path.abspath(candidate)
        except OSError:
            pass
    return exe


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
        if is_kernel_thread(pid):
            raise CalmError(f"pid {pid} is a kernel thread: it has no user memory to record")
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
