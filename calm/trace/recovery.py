"""Reading a trace whose writer was killed between two halves of an HDF5 flush.

HDF5 does not write a flush atomically. The raw chunks go first, then the metadata cache in no
fixed order, and the superblock's end-of-allocation address (EOA) can reach the disk after the
chunk index that already points past it. A writer SIGKILLed in that window leaves a file whose
bytes are all there but whose superblock claims it ends earlier; HDF5 then refuses every read
past that address ("addr overflow"). `h5clear --increment` repairs such a file in place by raising
the EOA to the end of the file. A reader must not modify the user's file, so this module does the
same repair on the fly: a read-only file object that serves the superblock with the EOA raised
to the file's size (and its checksum recomputed), for h5py's file-object driver.

Only superblock versions 2 and 3 are handled: those are what `TraceWriter` creates (its
file-space strategy needs them), and their layout is fixed (size of offsets 8 is required here).
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Superblock v2/v3: signature 8, version 1, size of offsets 1, size of lengths 1, flags 1,
# base address 8, extension address 8, end-of-file (EOA) address 8, root object header 8,
# checksum 4.
_SUPERBLOCK_SIZE = 48
_EOA_OFFSET = 28
_CHECKSUM_OFFSET = 44
FLAG_OPEN_FOR_WRITE = 0x01

_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class Superblock:
    """The fields of a v2/v3 superblock this module needs."""

    version: int
    flags: int
    base_address: int
    eoa: int
    raw: bytes

    @property
    def left_open(self) -> bool:
        """True if the writer never closed the file (the 'open for write' flag is still set)."""
        return bool(self.flags & FLAG_OPEN_FOR_WRITE)


def read_superblock(path: Path) -> Superblock | None:
    """The superblock at offset 0 if it is version 2 or 3 with 8-byte offsets, else None."""
    with open(path, "rb") as f:
        raw = f.read(_SUPERBLOCK_SIZE)
    if len(raw) < _SUPERBLOCK_SIZE or raw[:8] != HDF5_SIGNATURE:
        return None
    version, size_of_offsets, _size_of_lengths, flags = raw[8:12]
    if version not in (2, 3) or size_of_offsets != 8:
        return None
    if struct.unpack_from("<I", raw, _CHECKSUM_OFFSET)[0] != lookup3(raw[:_CHECKSUM_OFFSET]):
        return None
    base, _ext, eoa, _root = struct.unpack_from("<4Q", raw, 12)
    return Superblock(version=version, flags=flags, base_address=base, eoa=eoa, raw=raw)


def needs_eoa_repair(path: Path) -> Superblock | None:
    """The superblock if the file was left open by its writer with bytes past its EOA."""
    sb = read_superblock(path)
    if sb is None or not sb.left_open:
        return None
    return sb if sb.base_address + sb.eoa < os.path.getsize(path) else None


def repaired_superblock(sb: Superblock, file_size: int) -> bytes:
    """The superblock with the EOA raised to the end of the file and a valid checksum."""
    raw = bytearray(sb.raw)
    struct.pack_into("<Q", raw, _EOA_OFFSET, file_size - sb.base_address)
    struct.pack_into("<I", raw, _CHECKSUM_OFFSET, lookup3(bytes(raw[:_CHECKSUM_OFFSET])))
    return bytes(raw)


class EoaRepairedFile(io.RawIOBase):
    """A read-only view of an HDF5 file that serves a repaired superblock (see module doc)."""

    def __init__(self, path: Path, sb: Superblock) -> None:
        super().__init__()
        self._f = open(path, "rb")
        self._size = os.fstat(self._f.fileno()).st_size
        self._head = repaired_superblock(sb, self._size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        pos = self._f.tell()
        n = self._f.readinto(buffer)
        if n and pos < _SUPERBLOCK_SIZE:
            end = min(pos + n, _SUPERBLOCK_SIZE)
            memoryview(buffer)[: end - pos] = self._head[pos:end]
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle`, the checksum HDF5 puts on v2+ metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    i = 0
    while length - i > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK
        b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK
        c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK
        b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK
        c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK
        i += 12
    tail = data[i:]
    if not tail:
        return c
    tail = tail + bytes(12 - len(tail))
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b; c = (c - _rot(b, 14)) & _MASK
    a ^= c; a = (a - _rot(c, 11)) & _MASK
    b ^= a; b = (b - _rot(a, 25)) & _MASK
    c ^= b; c = (c - _rot(b, 16)) & _MASK
    a ^= c; a = (a - _rot(c, 4)) & _MASK
    b ^= a; b = (b - _rot(a, 14)) & _MASK
    c ^= b; c = (c - _rot(b, 24)) & _MASK
    return c
