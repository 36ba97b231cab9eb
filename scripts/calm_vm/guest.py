"""Boot a guest under qemu, run one command in it, and return the command's exit status.

The guest console (ttyS0) carries the command's stdout/stderr and is streamed to the host; a second
serial port (ttyS1) written to a host file carries only the harness status lines (READY, EXIT n,
FAIL why), so the exit status is never confused with output.

KVM: on these machines KVM has failed ("failed to set MSR") or hung (a 10-minute hang burning a core
was seen), so TCG is the default; `auto` tries KVM with a short boot deadline and falls back to TCG.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from . import VmError
from .initramfs import build_base, run_archive
from .kernels import Kernel

KVM_BOOT_DEADLINE = 20.0  # seconds for a KVM guest to reach READY before falling back to TCG
EXIT_TIMEOUT = 124  # like timeout(1)
# A TCG guest's kernel can die while it boots, before the harness runs anything: seen once in
# CI, the 6.12 kernel's "Oops: int3" in sched_clock_cpu while patching its own code with two
# vCPUs (an emulation race; the same kernel booted in every other run). Such a boot is tried
# again; a guest that dies after READY, while the command runs, is never retried.
BOOT_ATTEMPTS = 3


class BootCrash(VmError):
    """The guest kernel died before the harness reported READY (no command had started)."""


@dataclass
class GuestOptions:
    """What a user can choose for one guest run (each maps to a calm-vm option)."""

    accel: str = "tcg"  # tcg | kvm | auto (KVM with a boot deadline, then TCG)
    memory_mib: int = 2048
    cpus: int = 2
    timeout: float = 600.0
    cwd: str = field(default_factory=os.getcwd)
    writable: list[str] = field(default_factory=list)  # host dirs mounted read-write at same path
    env: dict[str, str] = field(default_factory=dict)
    kernel_args: list[str] = field(default_factory=list)  # appended to the guest kernel's command line


@dataclass
class GuestResult:
    returncode: int
    accel: str
    boot_seconds: float  # from qemu start to the guest's READY status line
    total_seconds: float


def caller_python() -> str:
    """The interpreter running the harness, as the caller named it. Not realpath'd: a venv's
    bin/python is a symlink to the base interpreter, and only the unresolved path makes Python
    find the venv's pyvenv.cfg (and so its site-packages)."""
    return os.path.abspath(sys.executable)


def _guest_environment(options: GuestOptions) -> dict[str, str]:
    """The command's environment: the caller's PATH with its Python's bin first (so `python` and
    `calm` are the venv's when the caller runs in one), VIRTUAL_ENV as `activate` sets it, tmpfs
    HOME, extras."""
    python_bin = os.path.dirname(caller_python())
    path = ":".join([python_bin, os.environ.get("PATH", "/usr/bin:/bin")])
    env = {
        "PATH": path,
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": "/tmp/home/.mpl",
        "CALM_VM_GUEST": "1",
        # a crash under TCG (seen once: `calm analyze` -11 in the guest) prints Python's stack
        "PYTHONFAULTHANDLER": "1",
    }
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    for name in ("CI", "TERM", "PYTHONPATH"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(options.env)
    return env


def _run_script(command: list[str], options: GuestOptions) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in _guest_environment(options).items())
    return (
        "mkdir -p /tmp/home\n"
        f"{exports}"
        f"cd {shlex.quote(options.cwd)} || exit 125\n"
        f"exec {shlex.join(command)}\n"
    )


# Host directories the guest covers with its own tmpfs (see initramfs.py).
TMPFS_IN_GUEST = ("/tmp", "/run", "/var/tmp", "/dev/shm")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python_directories() -> set[str]:
    """Where the caller's Python lives and imports from: the venv (sys.prefix), the base
    installation and the real interpreter's directory, and every directory on sys.path (which
    holds the site-packages and the roots that .pth files of editable installs add)."""
    dirs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable))}
    dirs.update(p for p in sys.path if p and os.path.isdir(p))
    return {os.path.abspath(d) for d in dirs}


def hidden_by_tmpfs(options: GuestOptions) -> list[str]:
    """Directories the command needs that lie under a guest tmpfs and would be invisible there:
    its working directory, this checkout (which an editable install points at), and the caller's
    Python (a venv made under /tmp, say). They are shared read-only at the same path."""
    needed: list[str] = []
    for directory in sorted({os.path.abspath(options.cwd), REPO, *_python_directories()}):
        if directory in TMPFS_IN_GUEST:
            continue  # the guest's own, writable tmpfs stands in for the host's /tmp itself
        masked = any(directory.startswith(t + "/") for t in TMPFS_IN_GUEST)
        covered = any(directory == d or directory.startswith(d.rstrip("/") + "/")
                      for d in [*options.writable, *needed])
        if masked and not covered:
            needed.append(directory)
    return needed


def _mounts_script(writable: list[str], readonly: list[str] = ()) -> str:
    lines = []
    shares = [(f"rw{i}", d, "") for i, d in enumerate(writable)]
    shares += [(f"ro{i}", d, ",ro") for i, d in enumerate(readonly)]
    for tag, directory, ro in shares:
        target = shlex.quote("/mnt" + directory)
        what = "read-only" if ro else "read-write"
        lines.append(
            f"mkdir -p {target} 2>/dev/null; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000{ro} {tag} {target}"
            f" || fail {shlex.quote('mounting ' + directory + ' ' + what + ' failed')}\n"
        )
    return "".join(lines)


# QEMU 7.2 (Debian 12) is the first to emulate AVX/AVX2 under TCG, and NumPy, glibc and HDF5 pick
# those paths when the CPU offers them. A CI run saw `calm analyze` die of SIGSEGV in a guest, which
# neither the host nor 5 quiet guest runs reproduce; NumPy's own CI had random segfaults under older
# QEMU emulation that newer QEMU fixed. The guests exist to test the kernel (soft-dirty, pagemap),
# not the vector units, so they get the CPU without AVX: the SSE paths TCG has run for years.
TCG_CPU = "max,avx=off,avx2=off,fma=off,f16c=off,vaes=off,vpclmulqdq=off"


def _qemu_command(kernel: Kernel, initrd: Path, status: Path, accel: str, options: GuestOptions) -> list[str]:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VmError("qemu-system-x86_64 not found: run scripts/install-vm-deps")
    cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", TCG_CPU]
    virtfs = ["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"]
    for index, directory in enumerate(options.writable):
        virtfs += ["-virtfs", f"local,path={directory},mount_tag=rw{index},security_model=none,multidevs=remap"]
    for index, directory in enumerate(hidden_by_tmpfs(options)):
        virtfs += ["-virtfs", f"local,path={directory},mount_tag=ro{index},security_model=none,"
                   "readonly=on,multidevs=remap"]
    return [
        qemu, *cpu, "-m", str(options.memory_mib), "-smp", str(options.cpus),
        "-nodefaults", "-display", "none", "-no-reboot",
        "-serial", "stdio", "-serial", f"file:{status}",
        "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd),
        "-append", " ".join(["console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init", *options.kernel_args]),
        *virtfs,
    ]


def _status_value(status: Path) -> tuple[bool, int | None, str | None]:
    """(ready, exit code, failure reason) from the guest's status channel."""
    text = status.read_text(errors="replace") if status.exists() else ""
    ready = "CALM-VM-READY" in text
    code = None
    failure = None
    for line in text.splitlines():
        if line.startswith("CALM-VM-EXIT "):
            code = int(line.split()[1])
        elif line.startswith("CALM-VM-FAIL "):
            failure = line[len("CALM-VM-FAIL "):]
    return ready, code, failure


def _pump(stream: IO[bytes], sink: Callable[[bytes], None]) -> None:
    """Copy the guest console to the sink, dropping the tty's carriage returns."""
    for chunk in iter(lambda: stream.read1(65536), b""):
        sink(chunk.replace(b"\r\n", b"\n"))


def _boot_once(kernel: Kernel, initrd: Path, accel: str, options: GuestOptions,
               sink: Callable[[bytes], None], boot_deadline: float | None) -> GuestResult | None:
    """One qemu run. Returns None if `boot_deadline` passed before READY (caller falls back)."""
    with tempfile.TemporaryDirectory(prefix="calm-vm-") as tmp:
        status = Path(tmp) / "status"
        status.touch()
        cmd = _qemu_command(kernel, initrd, status, accel, options)
        start = time.monotonic()
        held: list[bytes] = []  # console output is held back until READY when a fallback may follow
        gate = threading.Event()

        def gated_sink(data: bytes) -> None:
            if boot_deadline is not None and not gate.is_set():
                held.append(data)
            else:
                sink(data)

        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, gated_sink), daemon=True)
        pump.start()
        boot_seconds = float("nan")
        timed_out = False
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            ready, _, _ = _status_value(status)
            if ready and boot_seconds != boot_seconds:
                boot_seconds = elapsed
                if boot_deadline is not None:
                    for data in held:
                        sink(data)
                    gate.set()
            if not ready and boot_deadline is not None and elapsed > boot_deadline:
                proc.kill()
                proc.wait()
                return None
            if elapsed > options.timeout:
                proc.kill()
                timed_out = True
                break
            time.sleep(0.05)
        proc.wait()
        pump.join(timeout=5)
        ready, code, failure = _status_value(status)
        if ready and boot_seconds != boot_seconds:
            boot_seconds = time.monotonic() - start
        if not gate.is_set():
            for data in held:
                sink(data)
        total = time.monotonic() - start
        if timed_out:
            sys.stderr.write(f"calm-vm: guest killed after the {options.timeout:g} s timeout\n")
            return GuestResult(EXIT_TIMEOUT, accel, boot_seconds, total)
        if code is None:
            if failure:
                raise VmError(f"guest boot failed: {failure}")
            if not ready and boot_deadline is not None:
                return None  # qemu died before READY (KVM refused to start): fall back
            if not ready:
                raise BootCrash(f"guest kernel died while booting, before the command started (qemu "
                                f"exit {proc.returncode}) - see the console output above")
            raise VmError(f"guest ended without an exit status (qemu exit {proc.returncode}; "
                          "kernel panic?) - see the console output above")
        return GuestResult(code, accel, boot_seconds, total)


def run_in_guest(kernel: Kernel, command: list[str], options: GuestOptions,
                 sink: Callable[[bytes], None] | None = None) -> GuestResult:
    """Run `command` inside a guest booted on `kernel`; its console output goes to `sink`."""
    if not command:
        raise VmError("no command given: put it after --, e.g. calm-vm -- uname -r")
    for directory in options.writable:
        if not os.path.isdir(directory):
            raise VmError(f"--rw {directory}: not a directory")
    if options.accel not in ("auto", "kvm", "tcg"):
        raise VmError(f"--accel {options.accel}: choose auto, kvm or tcg")
    if sink is None:
        def sink(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
    base = build_base(kernel)
    with tempfile.TemporaryDirectory(prefix="calm-vm-initrd-") as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        initrd.write_bytes(base.read_bytes() + run_archive(_run_script(command, options),
                                                           _mounts_script(options.writable,
                                                                          hidden_by_tmpfs(options))))
        if options.accel in ("auto", "kvm") and _kvm_usable():
            deadline = KVM_BOOT_DEADLINE if options.accel == "auto" else None
            result = _boot_once(kernel, initrd, "kvm", options, sink, deadline)
            if result is not None:
                return result
            sys.stderr.write("calm-vm: KVM guest did not boot; falling back to TCG\n")
        elif options.accel == "kvm":
            raise VmError("--accel kvm: /dev/kvm is not usable here")
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            try:
                result = _boot_once(kernel, initrd, "tcg", options, sink, None)
            except BootCrash as crash:
                if attempt == BOOT_ATTEMPTS:
                    raise VmError(f"{crash} ({BOOT_ATTEMPTS} boots tried)") from None
                sys.stderr.write(f"calm-vm: {crash}; booting again ({attempt + 1} of {BOOT_ATTEMPTS})\n")
                continue
            assert result is not None
            return result
        raise AssertionError("unreachable")


def _kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)
