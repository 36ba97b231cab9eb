"""Helpers of the fault-injection tests (issue 12): a small tmpfs, planted symlinks, and the
classification of a command's outcome as clean (exit 0, or one error line) or not.

Every command runs as a real subprocess with a timeout, so a hang is a test failure and a
segfault is seen as what it is (a negative return code), never as a hung or crashed pytest.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.collector_helpers import REPO

NOBODY = 65534
COMMAND_TIMEOUT = 60.0  # the bound for any reader on any damaged file
ONE_LINE = re.compile(r"^calm( [a-z]+)?: (error: .+|interrupted)$")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, chown, sysctl)")


@dataclass
class Outcome:
    """What one command did, and whether that is acceptable for damaged input."""

    args: list[str]
    returncode: int | None  # None: killed by the timeout (a hang)
    stderr: str
    stdout: str

    @property
    def clean_error(self) -> bool:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return (self.returncode == 1 and len(lines) == 1 and bool(ONE_LINE.match(lines[0]))
                and "Traceback" not in self.stderr)

    @property
    def success(self) -> bool:
        return self.returncode == 0 and "Traceback" not in self.stderr

    @property
    def kind(self) -> str:
        if self.returncode is None:
            return "hang"
        if self.success:
            return "ok"
        if self.clean_error:
            return "error-line"
        if self.returncode < 0:
            return f"signal {-self.returncode}"
        return "traceback" if "Traceback" in self.stderr else f"exit {self.returncode}, {self.stderr.count(chr(10))} lines"


def run_calm(*args: str, timeout: float = COMMAND_TIMEOUT, cwd: Path | None = None,
             env: dict | None = None) -> Outcome:
    """`python -m calm ARGS` with a timeout that kills its whole process group (no stray children)."""
    proc = subprocess.Popen([sys.executable, "-m", "calm", *args], cwd=cwd or REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return Outcome(list(args), proc.returncode, stderr, stdout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        return Outcome(list(args), None, stderr, stdout)


@contextlib.contextmanager
def small_tmpfs(size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "600k") mounted for the duration of the block."""
    mount_point = Path(tempfile.mkdtemp(prefix="calm-reliab-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
                   check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


PROTECTED_SYMLINKS = Path("/proc/sys/fs/protected_symlinks")


@pytest.fixture
def unprotected_symlinks() -> Iterator[None]:
    """fs.protected_symlinks=0 (common in containers) for the test, restored afterwards: root then
    follows a symlink that another user planted in a sticky world-writable directory."""
    try:
        old = PROTECTED_SYMLINKS.read_text().strip()
        if old != "0":
            PROTECTED_SYMLINKS.write_text("0\n")
    except OSError as exc:
        pytest.skip(f"cannot set fs.protected_symlinks: {exc}")
    try:
        yield
    finally:
        if old != "0":
            PROTECTED_SYMLINKS.write_text(old + "\n")


@pytest.fixture
def sticky_dir() -> Iterator[Path]:
    """A sticky world-writable directory like /tmp, where another user plants links."""
    path = Path(tempfile.mkdtemp(prefix="calm-reliab-shared-"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def plant_link(link: Path, target: Path) -> Path:
    """A symlink owned by another user (nobody), as an attacker would leave it."""
    os.symlink(target, link)
    os.lchown(link, NOBODY, NOBODY)
    return link


@pytest.fixture
def victim() -> Iterator[Path]:
    """A file an attacker would like root to overwrite (outside the shared directory)."""
    folder = Path(tempfile.mkdtemp(prefix="calm-reliab-victim-"))
    path = folder / "victim"
    path.write_bytes(b"precious\n")
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
