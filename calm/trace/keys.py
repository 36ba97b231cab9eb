"""One uint64 key per page of a trace: (process row << 48) | virtual page number.

The analyzer and the replay both sort, merge and look up pages by this key; it is defined once here.

Why: a page is only identified by its process *and* its address (forked workers reuse the same
addresses for different physical pages), and numpy sorts, merges and searches one uint64 column far
faster than pairs. 48 bits of page number cover a 2**60-byte address space at 4 KiB pages (x86-64
5-level paging needs 2**45), and 16 bits of row allow 65,536 processes in one trace.
"""

from __future__ import annotations

import numpy as np

from calm.core.errors import CalmError

VPN_BITS = 48
VPN_MASK = np.uint64((1 << VPN_BITS) - 1)
MAX_ROWS = 1 << (64 - VPN_BITS)


def make_keys(process: np.ndarray, vpn: np.ndarray) -> np.ndarray:
    """Packs (process row, vpn) arrays into keys; refuses values that would not round-trip."""
    vpn = np.asarray(vpn, dtype=np.uint64)
    process = np.asarray(process, dtype=np.uint64)
    if vpn.size and int(vpn.max()) > int(VPN_MASK):
        raise CalmError(f"page number {int(vpn.max()):#x} does not fit calm's 48-bit page keys")
    if process.size and int(process.max()) >= MAX_ROWS:
        raise CalmError(f"trace has more than {MAX_ROWS} processes; calm supports at most that")
    return (process << np.uint64(VPN_BITS)) | vpn


def key_process(keys: np.ndarray) -> np.ndarray:
    return (keys >> np.uint64(VPN_BITS)).astype(np.uint32)


def key_vpn(keys: np.ndarray) -> np.ndarray:
    return keys & VPN_MASK


def process_key_range(row: int) -> tuple[np.uint64, np.uint64]:
    """[lo, hi) of the keys that belong to process `row`."""
    return np.uint64(row << VPN_BITS), np.uint64((row + 1) << VPN_BITS)
