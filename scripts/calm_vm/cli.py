"""Command line of scripts/calm-vm (argparse; errors as one line, exit 2 like other tools)."""

from __future__ import annotations

import argparse
import os
import sys

from calm.core.argtypes import OneLineErrorParser

from . import KERNELS, VmError
from .guest import GuestOptions, run_in_guest
from .kernels import cache_dir, fetch

EPILOG = """\
examples:
  calm-vm -- uname -r
  calm-vm --kernel 6.12 -- calm record --backend soft-dirty --duration 5 -o /tmp/t.h5 -- python -m calm.workloads.groundtruth
  calm-vm --kernel 6.1 --rw "$PWD/out" -- calm record -o "$PWD/out/t.h5" --duration 5 -- python -m calm.workloads.groundtruth
  calm-vm --kernel 6.12 -- python -m pytest -m kernel tests/kernel

The host root is shared read-only; /tmp, /run, /var/tmp, /root are tmpfs in the guest (lost at exit);
use --rw DIR to keep files. Kernels are cached in $CALM_VM_CACHE (default ~/.cache/calm-vm).
The exit status is the guest command's (124 on --timeout, 2 on a harness error).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="calm-vm",
        description="Run a command inside a qemu guest whose Debian kernel has soft-dirty "
                    "(and, on 6.12, PAGEMAP_SCAN), with the host root shared read-only.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", choices=sorted(KERNELS), default="6.12",
                        help="kernel series: 6.1 (Debian bookworm) or 6.12 (trixie, has PAGEMAP_SCAN); default 6.12")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="tcg",
                        help="tcg (default: KVM failed or hung on this kind of machine), kvm, or auto "
                             "(KVM with a 20 s boot deadline, then TCG)")
    parser.add_argument("--memory", type=int, default=2048, metavar="MIB", help="guest memory (default 2048)")
    parser.add_argument("--cpus", type=int, default=2, help="guest vCPUs (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="kill the guest after this long (default 600)")
    parser.add_argument("--rw", action="append", default=[], metavar="DIR",
                        help="mount host DIR read-write at the same path in the guest (repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set an environment variable for the command (repeatable)")
    parser.add_argument("--append", action="append", default=[], metavar="PARAM",
                        help="add a kernel parameter, e.g. transparent_hugepage=never (repeatable; later "
                             "ones win over the harness's own)")
    parser.add_argument("--fetch-only", action="store_true",
                        help="download and cache the kernel and initramfs, then exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        if args.memory < 256 or args.cpus < 1 or args.timeout <= 0:
            raise VmError("--memory must be >= 256, --cpus >= 1 and --timeout > 0")
        env = {}
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise VmError(f"--env {item}: expected NAME=VALUE")
            env[name] = value
        kernel = fetch(args.kernel)
        if args.fetch_only:
            from .initramfs import build_base
            print(f"calm-vm: kernel {kernel.release} and initramfs {build_base(kernel)} cached in {cache_dir()}")
            return 0
        options = GuestOptions(accel=args.accel, memory_mib=args.memory, cpus=args.cpus,
                               timeout=args.timeout, writable=[os.path.abspath(d) for d in args.rw],
                               env=env, kernel_args=args.append)
        result = run_in_guest(kernel, command, options)
    except VmError as error:
        print(f"calm-vm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    booted = "did not boot" if result.boot_seconds != result.boot_seconds else \
        f"booted in {result.boot_seconds:.1f} s"
    print(f"calm-vm: kernel {kernel.release} ({result.accel}): {booted}, "
          f"exit {result.returncode} after {result.total_seconds:.1f} s", file=sys.stderr)
    return result.returncode
