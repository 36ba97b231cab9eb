"""Read another process's pages with process_vm_readv and hash them in the same pass.

Why: the hash backend reads all writable resident memory every round, so its cost is the cost of
that read. process_vm_readv(2) copies straight from the target's pages into ours, 1.5-2x faster than
pread on /proc/PID/mem for the same ranges (measured in BENCHMARKS.md). Pages are copied in blocks
that stay in the CPU's L2 cache (BLOCK_PAGES) and hashed right after the copy, before the next
block, so each page is fetched from main memory once.

The loop (gather iovecs for up to BLOCK_PAGES pages, one syscall, hash the block) is compiled with
numba: numpy's uint64 matrix-vector product hashes at ~15 GB/s here, a third of the copy's speed,
while the same sum compiled for the host CPU runs at ~90 GB/s, which is what brings a round within
reach of a bare copy. The hash is exactly `calm.collector.page_hash.hash_pages` (a test checks it).
Without numba (a platform it does not support) the same loop runs in Python, a syscall and one
numpy product per block: correct, slower.

A block that cannot be read whole (a page unmapped since the pagemap read, device memory) is read
again page by page from Python to find out which pages failed; ESRCH means the process is gone.
"""

from __future__ import annotations

import ctypes
import errno
import os

import numpy as np

from calm.collector import page_hash
from calm.collector.procfs import PAGE_SIZE, ProcessGone, raise_for
from calm.collector.ranges import runs

BLOCK_PAGES = 64  # 256 KiB with 4 KiB pages, in L2; 64-256 equally fast (bench_hash_read.py --blocks)
IOV_MAX = 1024  # remote iovecs per call (the kernel's UIO_MAXIOV)
WORDS = PAGE_SIZE // 8

_libc = ctypes.CDLL(None, use_errno=True)
_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                              ctypes.c_ulong, ctypes.c_ulong]
_process_vm_readv.restype = ctypes.c_ssize_t
_pvr = _process_vm_readv  # what the loop calls: numba's compile swaps in libc's symbol as numba sees it


def _read_hash_loop(pid, run_addr, run_pages, first_run, first_page, buf, local_iov, remote_iov,
                    keys, out, out_pos):
    """Reads runs [first_run:] (from page `first_page` of the first) block by block and hashes
    them into out[out_pos:]. Returns the out position reached: where a short read stopped, or the
    end. Plain Python that numba compiles (see module docstring)."""
    n_runs = run_addr.shape[0]
    r = first_run
    p = first_page
    pos = out_pos
    buf_addr = buf.ctypes.data
    while r < n_runs:
        filled = 0
        n_iov = 0
        while r < n_runs and filled < BLOCK_PAGES and n_iov < IOV_MAX:
            take = min(run_pages[r] - p, BLOCK_PAGES - filled)
            remote_iov[2 * n_iov] = run_addr[r] + p * PAGE_SIZE
            remote_iov[2 * n_iov + 1] = take * PAGE_SIZE
            n_iov += 1
            filled += take
            p += take
            if p == run_pages[r]:
                r += 1
                p = 0
        local_iov[0] = buf_addr
        local_iov[1] = filled * PAGE_SIZE
        got = _pvr(pid, local_iov.ctypes.data, 1, remote_iov.ctypes.data, n_iov, 0)
        done = got // PAGE_SIZE if got > 0 else 0
        for i in range(done):
            acc = np.uint64(0)
            base = i * WORDS
            for j in range(WORDS):
                acc += buf[base + j] * keys[j]
            out[pos + i] = acc
        pos += done
        if done < filled:
            return pos
    return pos


def _read_hash_numpy(pid, run_addr, run_pages, first_run, first_page, buf, local_iov, remote_iov,
                     keys, out, out_pos):
    """The same loop without numba: one numpy product per block."""
    n_runs = run_addr.shape[0]
    r, p, pos = first_run, first_page, out_pos
    while r < n_runs:
        filled = n_iov = 0
        while r < n_runs and filled < BLOCK_PAGES and n_iov < IOV_MAX:
            take = min(int(run_pages[r]) - p, BLOCK_PAGES - filled)
            remote_iov[2 * n_iov] = int(run_addr[r]) + p * PAGE_SIZE
            remote_iov[2 * n_iov + 1] = take * PAGE_SIZE
            n_iov, filled, p = n_iov + 1, filled + take, p + take
            if p == run_pages[r]:
                r, p = r + 1, 0
        local_iov[0], local_iov[1] = buf.ctypes.data, filled * PAGE_SIZE
        got = _process_vm_readv(pid, local_iov.ctypes.data, 1, remote_iov.ctypes.data, n_iov, 0)
        done = got // PAGE_SIZE if got > 0 else 0
        out[pos:pos + done] = page_hash.hash_pages(buf[:done * WORDS], keys)
        pos += done
        if done < filled:
            return pos
    return pos


def _compile():
    """The compiled loop and libc's process_vm_readv as numba sees it (an external symbol, which
    unlike a ctypes pointer lets numba cache the compiled code between runs), or the Python loop."""
    try:
        import numba
        from numba import types
    except ImportError:
        return _read_hash_numpy, "numpy"
    try:
        external = types.ExternalFunction("process_vm_readv", types.intp(
            types.int32, types.uintp, types.uintp, types.uintp, types.uintp, types.uintp))
        code = types_module().FunctionType(_read_hash_loop.__code__, {**globals(), "_pvr": external},
                                           "_read_hash_loop")
        loop = numba.njit(nogil=True, cache=True, boundscheck=False)(code)
        return loop, f"numba {numba.__version__}"
    except Exception:  # a numba that cannot compile here: the Python loop gives the same hashes
        return _read_hash_numpy, "numpy"


def types_module():
    import types

    return types


_loop = None
HASH_IMPLEMENTATION = ""


def hash_implementation() -> str:
    """'numba X.Y' or 'numpy': what hashes the pages (compiles the loop on first use)."""
    _ensure_compiled()
    return HASH_IMPLEMENTATION


def _ensure_compiled() -> None:
    global _loop, HASH_IMPLEMENTATION
    if _loop is None:
        _loop, HASH_IMPLEMENTATION = _compile()
        if HASH_IMPLEMENTATION != "numpy":  # compile now (or load the cache), not in a round
            reader = PageReader(os.getpid())
            probe = np.zeros(2 * WORDS, dtype=np.uint64)
            try:
                reader.read_hash(np.array([probe.ctypes.data // PAGE_SIZE + 1], dtype=np.uint64))
            except Exception:
                _loop, HASH_IMPLEMENTATION = _read_hash_numpy, "numpy"


class PageReader:
    """Reads and hashes pages of one process (reusable buffers; see module docstring)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.keys = page_hash.page_keys(PAGE_SIZE)
        self._buf = np.empty(BLOCK_PAGES * WORDS, dtype=np.uint64)
        self._local = np.zeros(2, dtype=np.uint64)
        self._remote = np.zeros(2 * IOV_MAX, dtype=np.uint64)
        self.unreadable_pages = 0

    def read_hash(self, vpns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of pages `vpns` (sorted uint64) and which of them could be read."""
        return self.read_hash_runs(*runs(vpns))

    def read_hash_runs(self, run_vpn: np.ndarray, run_pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`read_hash` of the pages given as runs: run i is pages run_vpn[i] .. + run_pages[i]."""
        _ensure_compiled()
        n = int(run_pages.sum())
        hashes = np.zeros(n, dtype=np.uint64)
        readable = np.ones(n, dtype=bool)
        run_addr = (run_vpn * np.uint64(PAGE_SIZE)).astype(np.uint64)
        run_first = np.cumsum(run_pages) - run_pages  # out position of each run's first page
        pos = 0
        while pos < n:
            r = int(np.searchsorted(run_first, pos, side="right") - 1)
            pos = int(_loop(self.pid, run_addr, run_pages, r, pos - int(run_first[r]), self._buf,
                            self._local, self._remote, self.keys, hashes, pos))
            if pos < n:  # a short read: find out why, skip the page, go on
                r = int(np.searchsorted(run_first, pos, side="right") - 1)
                self._check_page(int(run_vpn[r]) + pos - int(run_first[r]))
                readable[pos] = False
                self.unreadable_pages += 1
                pos += 1
        return hashes, readable

    def _check_page(self, vpn: int) -> None:
        """Raises ProcessGone (or CalmError) when the failure was the process, not the page."""
        local = (ctypes.c_uint64 * 2)(self._buf.ctypes.data, PAGE_SIZE)
        remote = (ctypes.c_uint64 * 2)(vpn * PAGE_SIZE, PAGE_SIZE)
        got = _process_vm_readv(self.pid, ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0)
        if got == PAGE_SIZE:
            return  # readable now (it was being remapped): counted unreadable this round only
        err = ctypes.get_errno()
        if err in (errno.EFAULT, errno.ENOMEM, errno.EIO):
            return  # the page itself: unmapped since the pagemap read, or device memory
        raise_for(OSError(err, os.strerror(err)), self.pid, "the memory")
        raise ProcessGone(self.pid)  # unreachable: raise_for always raises
