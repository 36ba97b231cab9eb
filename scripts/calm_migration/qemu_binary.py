"""The QEMU the migration harness runs: 9.0 or newer, fetched from Debian's backports when the
host's own is older.

Why: before QEMU 9.0, live migration under TCG loses writes. Clearing the migration dirty bitmap
did not reset the TCG TLB entries that had already been marked dirty, so a page written again
through such an entry was never sent again (fixed by "physmem: Fix migration dirty bitmap
coherency with TCG memory access", commit 03bfc2188f, QEMU 9.0). Measured here with Debian
bookworm's QEMU 7.2: the destination guest's kernel crashed (bad pointers in its timer queues) in
every one of 7 live migrations tried, and ran on after a migration of a paused guest; QEMU 10.0
from bookworm-backports migrated the same guests intact. A validation against a QEMU that does
not send what the guest wrote would validate nothing, so an older QEMU is refused.

The backports package is fetched like the guest kernels (scripts/calm_vm/kernels.py: apt with
its own lists and cache directories, nothing installed system-wide) and unpacked into the cache;
its binary links against the host's libraries (backports are built for the host's suite).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from calm_vm import VmError
from calm_vm.kernels import _apt_options, _locked, _run, cache_dir, host_codename

from . import MigrationError

MIN_VERSION = (9, 0)
PACKAGES = ("qemu-system-x86", "qemu-system-data", "qemu-system-common")


@dataclass(frozen=True)
class Qemu:
    """A qemu-system-x86_64 binary, its firmware directory (for -L; None: its built-in one)."""

    binary: Path
    data_dir: Path | None
    version: tuple[int, int, int]

    def command(self) -> list[str]:
        return [str(self.binary), *(["-L", str(self.data_dir)] if self.data_dir else [])]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def version_of(binary: Path | str) -> tuple[int, int, int]:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError as exc:
        raise MigrationError(f"cannot run {binary}: {exc.strerror}") from None
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise MigrationError(f"{binary} --version did not say its version")
    return tuple(int(x) for x in match.groups())  # type: ignore[return-value]


def find(explicit: str | None = None, *, fetch: bool = True) -> Qemu:
    """--qemu PATH if given, else the host's qemu-system-x86_64 if it is new enough, else the
    cached (or now fetched) backports build. Refuses a QEMU older than MIN_VERSION."""
    if explicit:
        version = version_of(explicit)
        _check(version, explicit)
        return Qemu(Path(explicit), None, version)
    host = shutil.which("qemu-system-x86_64")
    if host and version_of(host) >= MIN_VERSION:
        return Qemu(Path(host), None, version_of(host))
    cached = _cached()
    if cached is not None:
        return cached
    if not fetch:
        raise MigrationError("no QEMU >= 9.0 here: run scripts/install-vm-deps (fetches one) or give --qemu")
    return _fetch()


def _check(version: tuple[int, int, int], what: str) -> None:
    if version < MIN_VERSION:
        raise MigrationError(
            f"{what} is QEMU {'.'.join(map(str, version))}: live migration under TCG loses writes before "
            "QEMU 9.0 (commit 03bfc2188f), so its migrations cannot validate anything; let the harness "
            "fetch a newer one (omit --qemu) or give a QEMU >= 9.0")


def _root() -> Path:
    return cache_dir() / "qemu"


def _cached() -> Qemu | None:
    for binary in sorted(_root().glob("*/usr/bin/qemu-system-x86_64"), reverse=True):
        version = version_of(binary)
        if version >= MIN_VERSION:
            return Qemu(binary, binary.parent.parent / "share" / "qemu", version)
    return None


def _fetch() -> Qemu:
    suite = f"{host_codename()}-backports"
    with _locked(_root() / ".fetch.lock"):
        cached = _cached()
        if cached is not None:
            return cached
        try:
            options = _apt_options(suite)
            if not options:
                raise MigrationError(f"cannot tell the host's Debian suite to find {suite}")
            _run(["apt-get", *options, "update"], f"apt-get update for {suite}")
            with tempfile.TemporaryDirectory(dir=_root().parent) as tmp:
                for package in PACKAGES:
                    _run(["apt-get", *options, "download", f"{package}/{suite}"],
                         f"apt-get download {package}/{suite}", cwd=Path(tmp))
                staging = Path(tmp) / "root"
                for deb in Path(tmp).glob("*.deb"):
                    _run(["dpkg-deb", "-x", str(deb), str(staging)], f"unpacking {deb.name}")
                binary = staging / "usr/bin/qemu-system-x86_64"
                version = version_of(binary)
                _check(version, f"{suite}'s qemu-system-x86")
                target = _root() / ".".join(map(str, version))
                if target.exists():
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                staging.rename(target)
        except VmError as exc:
            raise MigrationError(f"fetching a QEMU >= 9.0 failed: {exc}") from None
    found = _cached()
    assert found is not None
    return found
