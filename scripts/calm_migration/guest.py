"""Migratable guests: a Debian kernel (scripts/calm_vm's cache) and an initramfs that carries the
workload in the guest's own RAM, under QEMU TCG with memfd-backed RAM and a QMP socket.

Why not scripts/calm_vm's guest: that one shares the host root over virtio-9p, and QEMU refuses
to migrate while a 9p export is mounted. This guest has no devices but a serial console (and a NIC when it serves HTTP); its
initramfs (busybox, the static workload, /init) is all it runs. The source and the destination
are started with the same command line, the destination with `-incoming defer`.

Handshakes, not sleeps: the guest's console goes to a host file, and the harness waits for the
workload's own lines ("ready", then periodic "beat" lines, which also show that a migrated guest
runs on at the destination).

A guest can also serve HTTP itself (`http_kib`, the in-band experiment): the initramfs then carries
virtio_net (from the same Debian kernel), the guest gets a virtio-net NIC on QEMU's user-mode
network (slirp: no tap or bridge on the host, and its state migrates with the guest), and /init
starts busybox httpd serving one random blob of that many KiB from the guest's own RAM. The host
reaches it through a port forward added over QMP (`forward_http`) once the guest says httpd is up
(`httpd_path`): the forward listens at once, so adding it late makes "the port listens" mean "the
service answers" for whoever waits on the port (scripts/calm_netns_services.serve_command).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from calm.qemu.qmp import Monitor
from calm_vm.initramfs import BUSYBOX, Cpio, module_load_order
from calm_vm.kernels import Kernel, cache_dir

from . import MigrationError
from .qemu_binary import Qemu

WORKLOAD_SOURCE = Path(__file__).with_name("guest_workload.c")
# /proc/PID/maps path of QEMU's memory-backend-memfd RAM: what `calm record --region` selects
RAM_REGION = "memfd:memory-backend-memfd"
QEMU_NICE = -10
NET_MODULES = ("virtio_pci", "virtio_net")  # and their dependencies (module_load_order)

INIT_SCRIPT = r"""#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
W=""
H=""
for x in $(cat /proc/cmdline); do
  case "$x" in
    calm_workload=*) W="${x#calm_workload=}";;
    calm_http=*) H="${x#calm_http=}";;
  esac
done
if [ -n "$H" ]; then
  for m in $(cat /etc/calm-net-modules); do
    insmod /lib/calm/$m.ko || echo "calm-migration-guest: insmod $m failed"
  done
  # QEMU user-mode networking: the guest is 10.0.2.15, its gateway 10.0.2.2
  ip link set lo up && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 \
    && ip route add default via 10.0.2.2 || echo "calm-migration-guest: no network"
  mkdir -p /www && dd if=/dev/urandom of=/www/blob-${H}k.bin bs=1024 count=$H 2>/dev/null
  httpd -p 80 -h /www && echo "calm-migration-guest: httpd ready /blob-${H}k.bin"
fi
[ -n "$W" ] || { echo "calm-migration-guest: no calm_workload= on the kernel command line"; poweroff -f; }
IFS=, ; set -- $W ; unset IFS
echo "calm-migration-guest: workload $*"
/bin/calm-guest-workload "$@"
echo "calm-migration-guest: workload exited with $?"
poweroff -f
"""


@dataclass(frozen=True)
class Workload:
    """What the guest runs: `mib` MiB written at `rate` pages/s in `pattern` (see the C source)."""

    name: str
    mib: int
    rate: float
    pattern: str
    seed: int = 1

    def kernel_argument(self) -> str:
        return f"calm_workload={self.mib},{self.rate:g},{self.pattern},{self.seed}"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:12]


def build_workload() -> Path:
    """The static workload binary, compiled once per source version into the harness cache."""
    source = WORKLOAD_SOURCE.read_bytes()
    target = cache_dir() / "migration" / f"calm-guest-workload-{_digest(source)}"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise MigrationError("no C compiler (cc): install gcc and libc6-dev (scripts/install-vm-deps)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    proc = subprocess.run([compiler, "-static", "-O2", "-o", str(tmp), str(WORKLOAD_SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise MigrationError(f"compiling {WORKLOAD_SOURCE.name} failed (static libc: libc6-dev): {last}")
    tmp.rename(target)
    return target


def build_initramfs(kernel: Kernel | None = None) -> Path:
    """busybox + the workload + /init, cached by the digest of what goes in; with `kernel`, also
    its virtio_net modules (a guest that serves HTTP needs them, see the module doc)."""
    if not BUSYBOX.exists():
        raise MigrationError(f"{BUSYBOX} not found: install busybox-static (scripts/install-vm-deps)")
    workload = build_workload()
    busybox = BUSYBOX.read_bytes()
    binary = workload.read_bytes()
    modules = module_load_order(kernel, NET_MODULES) if kernel is not None else []
    digest = _digest(INIT_SCRIPT.encode(), busybox, binary, *(data for _, data in modules))
    path = cache_dir() / "migration" / f"initramfs-{digest}.cpio"
    if path.exists():
        return path
    cpio = Cpio()
    for directory in ("bin", "dev", "etc", "lib", "lib/calm", "proc", "sys", "tmp"):
        cpio.directory(directory)
    for name, data in modules:
        cpio.file(f"lib/calm/{name}.ko", data)
    cpio.file("etc/calm-net-modules", "".join(f"{name}\n" for name, _ in modules).encode())
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox, 0o755)
    cpio.symlink("bin/sh", "busybox")
    cpio.file("bin/calm-guest-workload", binary, 0o755)
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(cpio.to_bytes())
    tmp.rename(path)
    return path


class Guest:
    """One QEMU process (source, or destination with `incoming=True`) and its files."""

    def __init__(self, qemu: Qemu, kernel: Kernel, initrd: Path, workload: Workload, workdir: Path,
                 role: str, *, memory_mib: int = 256, incoming: bool = False,
                 http_kib: int | None = None) -> None:
        self.role = role
        self.workdir = workdir
        self.console = workdir / f"{role}-console.log"
        self.qmp_socket = workdir / f"{role}.qmp"
        append = " ".join(["console=ttyS0", "loglevel=4", "panic=-1", "rdinit=/init",
                           "transparent_hugepage=never", workload.kernel_argument(),
                           *([f"calm_http={http_kib}"] if http_kib else [])])
        self.command = [
            *qemu.command(), "-accel", "tcg", "-cpu", "qemu64", "-smp", "1", "-m", f"{memory_mib}M",
            "-object", f"memory-backend-memfd,id=ram0,size={memory_mib}M",
            "-machine", "pc,memory-backend=ram0",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd), "-append", append,
        ]
        if http_kib:  # the same NIC on both sides: the device set is part of what migrates
            self.command += ["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile="]
        if incoming:
            self.command += ["-incoming", "defer"]
        self.log = open(workdir / f"{role}-qemu.log", "wb")
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        # On a shared machine unrelated load starved the migration thread (0-140 Mbit/s for
        # seconds under a 400 Mbit/s max-bandwidth): QEMU gets a higher priority where allowed.
        # The guests are mostly idle (the workload sleeps between 5 ms slices), so this takes
        # little from anyone; without the privilege the QEMUs run at the default priority.
        try:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, QEMU_NICE)
        except OSError:
            pass

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_socket(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while not self.qmp_socket.exists():
            self._check_alive("before opening its QMP socket")
            if time.monotonic() > end:
                raise MigrationError(f"{self.role} QEMU opened no QMP socket within {timeout:g} s")
            time.sleep(0.05)

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_line(self, pattern: str, *, after: int = 0, timeout: float = 300.0) -> re.Match:
        """Waits until the console, from offset `after`, holds a line matching `pattern`."""
        regex = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        while True:
            match = regex.search(self.console_text(), after)
            if match:
                return match
            self._check_alive(f"before printing /{pattern}/")
            if time.monotonic() > end:
                tail = self.console_text()[-400:]
                raise MigrationError(f"{self.role} guest printed no /{pattern}/ within {timeout:g} s; "
                                     f"console ends: {tail!r}")
            time.sleep(0.1)

    def httpd_path(self, timeout: float = 300.0) -> str:
        """Waits until the guest's httpd serves; returns the blob's path."""
        return self.wait_for_line(r"calm-migration-guest: httpd ready (\S+)", timeout=timeout).group(1)

    def forward_http(self, host: str, port: int) -> None:
        """Forwards tcp host:port (in QEMU's network namespace) to the guest's httpd (port 80)."""
        with Monitor(str(self.qmp_socket), name=f"{self.role} QEMU") as monitor:
            reply = monitor.execute("human-monitor-command",
                                    {"command-line": f"hostfwd_add net0 tcp:{host}:{port}-:80"})
        if reply.strip():  # HMP answers errors as text
            raise MigrationError(f"{self.role} QEMU refused the port forward {host}:{port}: {reply.strip()}")

    def _check_alive(self, when: str) -> None:
        code = self.proc.poll()
        if code is not None:
            self.log.flush()
            log = (self.workdir / f"{self.role}-qemu.log").read_text(errors="replace").strip()
            raise MigrationError(f"{self.role} QEMU exited with {code} {when}: {log[-300:] or '(no output)'}")

    def stop(self) -> None:
        """Ends the QEMU (SIGTERM, then SIGKILL) and closes its log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def workdir(prefix: str = "calm-migration-") -> Path:
    """A private directory for one run's sockets, consoles and logs."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def guest_ram_mib(pid: int) -> float:
    """Size of the QEMU's guest RAM mapping (MiB), from /proc/PID/maps, as a sanity check."""
    total = 0
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            if RAM_REGION in line:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                total += hi - lo
    return total / 2**20


