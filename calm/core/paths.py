"""Where calm writes, when it refuses to, and how a file gets there safely.

The policy every command follows (as `perf record` / `perf report` users expect):
- Input: analyze, replay and report read `calm.h5` when no trace is given (`DEFAULT_TRACE`), as
  `perf report` reads `perf.data`.
- Output goes next to the input by default (`default_output`: TRACE-analysis/, TRACE-replay/,
  TRACE-report.html).
- Nothing is overwritten without `-f/--force`: an existing output file, or an output directory
  that already holds files, is refused before any work starts.
- Everything is checked before anything is created, so a refused command leaves nothing behind.

How every file is written (the one safe-write primitive, `private_file` and its helpers): traces
hold command lines and memory layouts, and calm often runs as root in shared directories, so
- a file is created as a temporary file in its target directory (`tempfile.mkstemp`: an
  unpredictable name `.NAME.XXXXXXXX.tmp`, O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 whatever the
  umask, as perf.data), written, then renamed onto its name. The rename is atomic: a reader sees
  the old file or the whole new one, and a crash leaves at most a hidden temporary file;
- a symlink at the output name is refused unless --force, and with --force the *link* is replaced
  by the rename, never followed (a link planted by another user in /tmp cannot make root
  overwrite its target);
- without --force the rename cannot replace a file that appeared meanwhile: it is a hard link
  (which fails if the name exists) followed by the removal of the temporary name;
- outputs that are not regular files (/dev/null, a FIFO, a socket) are refused even with --force;
- an output directory calm creates is 0700; an existing one that is a symlink is followed only
  when the link belongs to the user running calm.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from calm.core.errors import CalmError

DEFAULT_TRACE = "calm.h5"
DIR_MODE = 0o700
TEMP_SUFFIX = ".tmp"


def default_output(trace: str | os.PathLike, suffix: str) -> Path:
    """The output next to `trace`: `run.h5` with suffix `-replay` -> `run-replay`."""
    trace = Path(trace)
    return trace.with_name(trace.stem + suffix)


def check_input_trace(path: str | os.PathLike) -> Path:
    """A trace path that exists and is a file, or one clear error (exit 1)."""
    path = Path(path)
    if not path.exists():
        hint = " (record one with `calm record`, or name the trace)" if str(path) == DEFAULT_TRACE else ""
        raise CalmError(f"trace {path} does not exist{hint}")
    if path.is_dir():
        raise CalmError(f"trace {path} is a directory, not a trace file")
    return path


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _check_parent(path: Path) -> None:
    parent = _parent(path)
    if not parent.is_dir():
        raise CalmError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CalmError(f"output directory {parent} is not writable")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CalmError(f"cannot access output {path}: {exc.strerror}") from None


def check_output_path(path: Path, *, force: bool) -> None:
    """Refuses an output file we could not or should not write, before any work starts."""
    st = _lstat(path)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise CalmError(f"output {path} is a directory; give a file name")
        if stat.S_ISLNK(st.st_mode):
            if not force:
                raise CalmError(f"output {path} is a symbolic link; use --force to replace the link "
                                "(its target is never written)")
        elif not stat.S_ISREG(st.st_mode):
            raise CalmError(f"output {path} is not a regular file; give a file name")
        elif not force:
            raise CalmError(f"output {path} exists; use --force to overwrite it")
    _check_parent(path)


def _check_dir_link(out: Path) -> None:
    """A symlinked output directory is followed only if it is our own link (see module doc)."""
    st = _lstat(out)
    if st is not None and stat.S_ISLNK(st.st_mode) and st.st_uid != os.geteuid():
        raise CalmError(f"output directory {out} is a symbolic link owned by uid {st.st_uid}; "
                        "refusing to follow it (remove it or give another directory)")


def check_output_dir(out: Path, *, force: bool) -> None:
    """Refuses a file in the way, a directory that already holds files (without --force), another
    user's symlink, or a missing/read-only parent; creates nothing."""
    _check_dir_link(out)
    if out.exists() and not out.is_dir():
        raise CalmError(f"output {out} exists and is not a directory")
    if out.is_dir():
        if not force and any(out.iterdir()):
            raise CalmError(f"output directory {out} is not empty; use --force to overwrite its files")
        if not os.access(out, os.W_OK | os.X_OK):
            raise CalmError(f"output directory {out} is not writable")
        return
    ancestor = out.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise CalmError(f"cannot create output directory {out}: {ancestor} is not a writable directory")


def prepare_output_dir(out: Path, *, force: bool = True) -> Path:
    """Checks (see check_output_dir) and creates the output directory (0700, parents too)."""
    check_output_dir(out, force=force)
    try:
        out.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise CalmError(f"cannot create output directory {out}: {exc.strerror}") from exc
    _check_dir_link(out)  # a link planted between the check and the mkdir
    return out


# -- the safe-write primitive -----------------------------------------------------------------------
def create_temp(target: Path) -> tuple[int, Path]:
    """A new private (0600) temporary file beside `target`: (open fd, its path). See module doc."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=_parent(target))
    except OSError as exc:
        raise _write_error(target, exc) from None
    return fd, Path(name)


def publish(temp: Path, target: Path, *, force: bool) -> None:
    """Gives the finished temporary file its name, atomically (see module doc)."""
    try:
        if force:
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)
        except FileExistsError:
            raise CalmError(f"output {target} appeared while calm was writing it; use --force to "
                            f"overwrite it (calm's output is kept as {temp})") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            # a file system without hard links: check, then rename (a narrow race, no link follow)
            if os.path.lexists(target):
                raise CalmError(f"output {target} appeared while calm was writing it; use --force") from None
            os.rename(temp, target)
            return
        os.unlink(temp)
    except OSError as exc:
        raise _write_error(target, exc) from None


def _write_error(target: Path, exc: OSError) -> CalmError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CalmError(f"cannot write {target}: the disk is full")
    return CalmError(f"cannot write {target}: {exc.strerror or exc}")


@contextlib.contextmanager
def private_file(target: Path, *, force: bool, text: bool = False, newline: str | None = None) -> Iterator[IO]:
    """Writes `target` through a private temporary file (see module doc): yields the open file;
    on success the file gets its name, on any error the temporary file is removed."""
    fd, temp = create_temp(target)
    try:
        try:
            with (os.fdopen(fd, "w", encoding="utf-8", newline=newline) if text else os.fdopen(fd, "wb")) as f:
                yield f
        except OSError as exc:
            raise _write_error(target, exc) from None
        publish(temp, target, force=force)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_private(target: Path, content: str | bytes, *, force: bool) -> Path:
    """Writes a whole file safely (see `private_file`); returns its path."""
    with private_file(target, force=force, text=isinstance(content, str)) as f:
        f.write(content)
    return target
