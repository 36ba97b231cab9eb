"""Build the guest's initramfs: static busybox, the virtio/9p modules in load order, and /init.

WHY a hand-written cpio: the newc format is a few lines of code, so the harness needs no cpio or
initramfs-tools on the host; and because the kernel accepts concatenated cpio archives, the cached
base archive is reused and each run only appends a tiny archive holding its command script.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import re
import shutil
import stat
import subprocess
from pathlib import Path

from . import VmError
from .kernels import Kernel, module_name

# What the guest must load to mount the host root over 9p; dependencies are resolved from each
# module's own "depends=" field and modules built into the kernel are skipped.
TARGET_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
BUSYBOX = Path("/bin/busybox")

# Status lines go to the second serial port (a file on the host), never mixed with command output.
INIT_SCRIPT = r"""#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
status() { echo "$*" > /dev/ttyS1; }
fail() { status "CALM-VM-FAIL $*"; echo "calm-vm guest: $*" >&2; reboot -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/calm-vm-modules); do
  insmod /lib/calm-vm/$m.ko || fail "insmod $m failed"
done
M=/mnt
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot $M \
  || fail "mounting the host root over 9p failed"
mount -t proc proc $M/proc && mount -t sysfs sysfs $M/sys && mount -t devtmpfs devtmpfs $M/dev \
  || fail "mounting proc/sys/dev in the chroot failed"
mkdir -p $M/dev/pts $M/dev/shm
mount -t devpts devpts $M/dev/pts
for d in /tmp /run /var/tmp /dev/shm; do
  [ -d $M$d ] && mount -t tmpfs -o mode=1777 tmpfs $M$d
done
. /etc/calm-vm-mounts
status CALM-VM-READY
chroot $M /bin/sh -c "$(cat /etc/calm-vm-run.sh)"
rc=$?
sync
echo 0 > /proc/sys/kernel/printk
status "CALM-VM-EXIT $rc"
reboot -f
"""


class Cpio:
    """A minimal writer of the SVR4 "newc" cpio format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % field for field in fields)
        self._parts.append(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        self._parts.append(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def to_bytes(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self._parts)


def _module_bytes(path: Path) -> bytes:
    """Module contents, decompressed: busybox insmod wants a plain ELF .ko."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        if shutil.which("zstd") is None:
            raise VmError(f"{path.name} is zstd-compressed: install zstd")
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def module_load_order(kernel: Kernel, targets: tuple[str, ...] = TARGET_MODULES) -> list[tuple[str, bytes]]:
    """(name, .ko bytes) for `targets` and their dependencies, dependencies first."""
    files = {module_name(p.name): p for p in kernel.modules_dir.iterdir()}
    builtin = kernel.builtin_modules
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in files:
            raise VmError(f"kernel {kernel.release}: module {name} is neither shipped nor built in")
        data = _module_bytes(files[name])
        match = re.search(rb"depends=([^\0]*)\0", data)
        for dep in (match.group(1).decode().split(",") if match else []):
            if dep:
                visit(dep.replace("-", "_"))
        order.append((name, data))

    for target in targets:
        visit(target)
    return order


def build_base(kernel: Kernel) -> Path:
    """Build (once) and return the cached base initramfs for a kernel."""
    # named by the init script's digest, so a changed script never meets a stale cached archive
    digest = hashlib.sha256(INIT_SCRIPT.encode()).hexdigest()[:12]
    path = kernel.root / f"initramfs-{digest}.cpio"
    if path.exists():
        return path
    if not BUSYBOX.exists():
        raise VmError(f"{BUSYBOX} not found: install busybox-static (scripts/install-vm-deps)")
    cpio = Cpio()
    for directory in ("bin", "dev", "etc", "lib", "lib/calm-vm", "mnt", "proc", "sys", "tmp"):
        cpio.directory(directory)
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    order = module_load_order(kernel)
    for name, data in order:
        cpio.file(f"lib/calm-vm/{name}.ko", data)
    cpio.file("etc/calm-vm-modules", "".join(f"{name}\n" for name, _ in order).encode())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(cpio.to_bytes())
    tmp.rename(path)
    return path


def run_archive(run_script: str, mounts_script: str) -> bytes:
    """The per-run cpio appended to the base: the command script and extra mounts."""
    cpio = Cpio()
    cpio.file("etc/calm-vm-run.sh", run_script.encode(), 0o755)
    cpio.file("etc/calm-vm-mounts", mounts_script.encode(), 0o644)
    return cpio.to_bytes()
