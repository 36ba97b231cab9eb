"""Disk space reserved ahead of every HDF5 write, so that a full disk is met by calm, not by HDF5.

Why: HDF5 does not survive ENOSPC in the middle of a flush. Its metadata cache is left half
written ("slist already enabled?"), every later call fails, h5py's destructors print pages of
errors and the process may segfault; the half-flushed file can even make readers loop. So the
trace writer asks for the space of a flush *before* the flush: `fallocate(FALLOC_FL_KEEP_SIZE)`
allocates blocks past the end of the file without changing its size, and HDF5's writes then land
in blocks that already exist and cannot fail for lack of space. If the reservation fails, the
flush is not attempted: the file stays as of the previous flush, and the recorder stops with one
line (see calm.trace.writer and calm.collector.recorder).

A file system without fallocate (some FUSE and network file systems) gets a weaker check instead:
the free space statvfs reports must exceed the request.

Hand-written because Python has `os.posix_fallocate` (which changes the file size, and HDF5 would
then take the zeros for its own end of file) but no `fallocate` with KEEP_SIZE, and no library
offers it; this is a ctypes call of the glibc wrapper.
"""

from __future__ import annotations

import ctypes
import errno
import os

from calm.core.errors import CalmError

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_fallocate.restype = ctypes.c_int


class DiskFull(CalmError):
    """The disk has no room for the next write; nothing of it was written."""


def _call(fd: int, mode: int, offset: int, length: int) -> int:
    """0, or the errno of fallocate."""
    if _fallocate(fd, mode, offset, length) == 0:
        return 0
    return ctypes.get_errno()


class SpaceReserve:
    """Keeps `reserve(n)` bytes allocated past the end of the file open as `fd`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.supported = True  # False: the file system has no fallocate; statvfs is checked instead

    def reserve(self, n_bytes: int) -> None:
        """Makes sure the next `n_bytes` past the end of the file are allocated, or raises DiskFull."""
        size = os.fstat(self.fd).st_size
        if self.supported:
            err = _call(self.fd, FALLOC_FL_KEEP_SIZE, size, max(1, n_bytes))
            if err == 0:
                return
            if err in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"no room for {n_bytes} more bytes")
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise OSError(err, os.strerror(err))
            self.supported = False
        self.check_free(n_bytes)

    def check_free(self, n_bytes: int) -> None:
        """Raises DiskFull unless the file system reports `n_bytes` free (a check, not a reservation)."""
        st = os.fstatvfs(self.fd)
        if st.f_bavail * st.f_frsize < n_bytes:
            raise DiskFull(f"no room for {n_bytes} more bytes")

    def release(self) -> None:
        """Gives back what is allocated past the end of the file (a trace kept uncompacted)."""
        if self.supported:
            size = os.fstat(self.fd).st_size
            _call(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, size, 1 << 40)
