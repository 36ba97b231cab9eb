"""calm-vm: boot a Debian kernel that has soft-dirty under qemu and run a host command inside it.

The host kernel here is built without CONFIG_MEM_SOFT_DIRTY, so the soft-dirty backend and the
PAGEMAP_SCAN fast path can only be exercised on a real kernel in a VM.  The guest shares the host's
root filesystem read-only over 9p and chroots into it, so the host's own Python, the editable calm
install and the test files are used unchanged; writable space in the guest is tmpfs.

Modules: kernels (fetch + cache Debian kernels), initramfs (busybox + 9p modules as a cpio),
guest (run qemu, report the command's exit status), cli (the scripts/calm-vm command line).
"""

KERNELS = {"6.1": "bookworm", "6.12": "trixie"}
"""Kernel series the harness knows -> Debian suite whose linux-image-amd64 provides it."""


class VmError(Exception):
    """A harness failure the user can act on (no qemu, kernel not fetchable, guest did not boot)."""
