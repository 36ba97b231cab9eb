"""calm-vm: boot a Debian kernel that has soft-dirty under qemu and run a host command inside it.

The host kernel here is built without CONFIG_MEM_SOFT_DIRTY, so the soft-dirty backend and the
PAGEMAP_SCAN fast path can only be exercised on a real kernel in a VM.  The guest shares the host's
root filesystem read-only over 9p and chroots into it, so the caller's Python (a virtualenv's,
when calm-vm runs in one), the editable calm install and the test files are used unchanged;
writable space in the guest is tmpfs.

Why not virtme-ng (measured in BENCHMARKS.md): on these Debian kernels under TCG it boots 2.9x to
5.4x slower, needs the whole kernel package, kmod and udev on the host, drops the caller's venv
from PATH, and cannot give the migration harness a guest without a 9p root.

Modules: kernels (fetch + cache Debian kernels), initramfs (busybox + 9p modules as a cpio),
guest (run qemu, report the command's exit status), cli (the scripts/calm-vm command line).
"""

KERNELS = {"6.1": "bookworm", "6.12": "trixie"}
"""Kernel series the harness knows -> Debian suite whose linux-image-amd64 provides it."""


class VmError(Exception):
    """A harness failure the user can act on (no qemu, kernel not fetchable, guest did not boot)."""
